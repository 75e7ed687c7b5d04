"""Export and storage budget costs, each beside a reference measured in the same run.

Run: .venv/bin/python bench/bench_export.py [--seconds 20] [--sessions 6] [--repeat 5]
     (writes bench/results/export.json and export.md)

1. `export` to a folder of one session recorded here (video from a `test:` source at
   1280x720, 15 fps, for SECONDS; no screen needed) versus copying the same bytes with
   `shutil.copyfile` (the floor: the files must be read and written once). A test source
   compresses to almost nothing, so the session's full video is then replaced by a real
   H.264 file of the same length made of noise (about 1 MiB a second): the export copies
   it as it is, so only its size matters.
2. The web app's zip (`zip_stream`, consumed piece by piece as the server sends it) versus
   `zipfile` writing the exported folder's files to a zip file on disk, same methods;
   and the peak Python memory of the stream (tracemalloc) beside the zip's size: the
   stream holds one piece at a time, never the zip.
3. `gc` removing everything removable from SESSIONS short sessions (chunks, full videos),
   per step, versus plain sqlite3 doing the same deletes (rows and attachment rows, one
   `BEGIN IMMEDIATE ... COMMIT` a step, same pragmas) and unlinking the same files, on a
   copy of the same library.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taskerino.models import Attachment, SessionConfig
from taskerino.sessions import StartRequest, Taskerino
from taskerino.sessions.export import zip_stream
from taskerino.store.files import FolderBlobStore
from taskerino.store.media import MediaLibrary
from taskerino.store.sqlite import SQLiteStore

RESULTS = Path(__file__).parent / "results"


def record(library: Taskerino, colour: str, seconds: float, size: tuple[int, int]) -> str:
    config = SessionConfig(
        screenshots=False,
        video=True,
        sources=[f"test:{colour}"],
        fps=15,
        width=size[0],
        height=size[1],
    )
    sid = library.start(StartRequest(name=f"bench {colour}", config=config)).id
    time.sleep(seconds)
    library.end(sid)
    return sid


def noise_video(path: Path, seconds: float) -> None:
    """A real H.264 MP4 of random pictures, 640x360 at 15 fps: bytes that do not shrink."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"crf": "30", "preset": "ultrafast"}
        for _ in range(int(seconds * 15)):
            picture = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def replace_full_video(home: Path, sid: str, path: Path) -> None:
    """Make `path` the session's full video, as the recorder attaches one."""
    store = SQLiteStore(home / "taskerino.db")
    try:
        media = MediaLibrary(store, FolderBlobStore(home / "blobs"))
        session = store.get_session(sid)
        assert session.video is not None
        video = session.video

        def attach(attachment: Attachment) -> None:
            video.full_video_attachment_id = attachment.id
            store.save_video(video)

        media.ingest(path, "video", "session.mp4", then=attach, source="keep")
    finally:
        store.close()


def timed(fn: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def bench_export(home: Path, scratch: Path, seconds: float, repeat: int) -> dict[str, Any]:
    with Taskerino.open(home) as library:
        sid = record(library, "blue", seconds, (1280, 720))
    noise = scratch / "noise.mp4"
    noise_video(noise, seconds)
    replace_full_video(home, sid, noise)
    with Taskerino.open(home) as library:
        files = library.export_files(sid)
        sources = [
            library.attachment_path(a)
            for a in (library.attachment(i) for i in _attachment_ids(library, sid))
        ]
        counter = iter(range(10**6))

        def export() -> None:
            library.export(sid, scratch / f"export-{next(counter)}")

        def copy() -> None:
            folder = scratch / f"copy-{next(counter)}"
            folder.mkdir()
            for path in sources:
                assert path is not None
                shutil.copyfile(path, folder / path.name)

        export_times, copy_times = [], []
        for _ in range(repeat):  # alternating, so both see the same machine load
            export_times += timed(export, 1)
            copy_times += timed(copy, 1)
        exported = scratch / "export-0"
        total = sum(p.stat().st_size for p in exported.rglob("*") if p.is_file())

        def stream() -> int:
            return sum(len(piece) for piece in zip_stream(files, f"taskerino-{sid}"))

        def reference() -> None:
            out = scratch / f"reference-{next(counter)}.zip"
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(p for p in exported.rglob("*") if p.is_file()):
                    method = zipfile.ZIP_STORED if path.suffix == ".mp4" else None
                    archive.write(path, path.relative_to(exported), compress_type=method)

        stream_times, reference_times = [], []
        for _ in range(repeat):
            stream_times += timed(stream, 1)
            reference_times += timed(reference, 1)
        tracemalloc.start()
        zip_bytes = stream()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "export_bytes": total,
        "export_s": statistics.median(export_times),
        "copy_s": statistics.median(copy_times),
        "zip_bytes": zip_bytes,
        "zip_stream_s": statistics.median(stream_times),
        "zip_reference_s": statistics.median(reference_times),
        "zip_stream_peak_python_bytes": peak,
    }


def _attachment_ids(library: Taskerino, sid: str) -> list[str]:
    session = library.get(sid)
    assert session.video is not None and session.video.full_video_attachment_id
    return [session.video.full_video_attachment_id]


def bench_gc(home: Path, scratch: Path, sessions: int) -> dict[str, Any]:
    colours = ["red", "green", "yellow", "cyan", "magenta", "white", "gray", "black"]
    with Taskerino.open(home) as library:
        for i in range(sessions):
            record(library, colours[i % len(colours)] + ("" if i < 8 else f"-{i}"), 2.0, (320, 180))
    copy = scratch / "gc-reference"
    shutil.copytree(home, copy)
    with Taskerino.open(home) as library:
        started = time.perf_counter()
        report = library.gc(0)
        gc_s = time.perf_counter() - started
    steps = [(r.session_id, r.kind) for r in report.removals]
    started = time.perf_counter()
    plain_gc(copy, steps)
    plain_s = time.perf_counter() - started
    return {
        "sessions": sessions,
        "steps": len(steps),
        "freed_bytes": report.before - report.after,
        "gc_s": gc_s,
        "per_step_s": gc_s / len(steps),
        "plain_per_step_s": plain_s / len(steps),
    }


# The rows each step deletes, and the attachments they referenced, in plain SQL.
_STEP_SQL = {
    "video_chunks": (
        "SELECT c.attachment_id FROM video_chunks c JOIN videos v ON v.id = c.video_id"
        " WHERE v.session_id=?",
        "DELETE FROM video_chunks WHERE video_id IN (SELECT id FROM videos WHERE session_id=?)",
    ),
    "full_video": (
        "SELECT full_video_attachment_id FROM videos WHERE session_id=?",
        "UPDATE videos SET full_video_attachment_id=NULL WHERE session_id=?",
    ),
    "screenshots": (
        "SELECT attachment_id FROM screenshots WHERE session_id=?",
        "DELETE FROM screenshots WHERE session_id=?",
    ),
}


def plain_gc(home: Path, steps: Sequence[tuple[str, str]]) -> None:
    db = sqlite3.connect(home / "taskerino.db", isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    try:
        for sid, kind in steps:
            select, delete = _STEP_SQL[kind]
            db.execute("BEGIN IMMEDIATE")
            ids = [r[0] for r in db.execute(select, (sid,)) if r[0]]
            db.execute(delete, (sid,))
            hashes = [
                db.execute("DELETE FROM attachments WHERE id=? RETURNING hash", (i,)).fetchone()[0]
                for i in ids
            ]
            db.execute("COMMIT")
            for digest in hashes:
                (home / "blobs" / digest[:2] / digest).unlink()
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a").mkdir(mode=0o700)
        (root / "b").mkdir(mode=0o700)
        (root / "scratch").mkdir()
        export = bench_export(root / "a", root / "scratch", args.seconds, args.repeat)
        gc = bench_gc(root / "b", root / "scratch", args.sessions)
    result = {
        "args": vars(args),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "export": export,
        "gc": gc,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    e, g = export, gc
    mib = 1 << 20
    rows = [
        (
            f"export to a folder ({e['export_bytes'] / mib:.1f} MiB)",
            f"{e['export_s'] * 1000:.0f} ms",
            f"copying the same bytes: {e['copy_s'] * 1000:.0f} ms",
            f"{e['export_s'] / e['copy_s']:.2f}x",
        ),
        (
            f"zip for the web app ({e['zip_bytes'] / mib:.1f} MiB), streamed",
            f"{e['zip_stream_s'] * 1000:.0f} ms",
            f"`zipfile` to a file: {e['zip_reference_s'] * 1000:.0f} ms",
            f"{e['zip_stream_s'] / e['zip_reference_s']:.2f}x",
        ),
        (
            f"gc, per step ({g['steps']} steps over {g['sessions']} sessions)",
            f"{g['per_step_s'] * 1000:.1f} ms",
            f"plain sqlite3 and unlink: {g['plain_per_step_s'] * 1000:.1f} ms",
            f"{g['per_step_s'] / g['plain_per_step_s']:.1f}x",
        ),
    ]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    md = (
        "# Export and storage budget\n\n"
        f"`.venv/bin/python bench/bench_export.py --seconds {args.seconds:g} "
        f"--sessions {args.sessions} --repeat {args.repeat}` (medians of {args.repeat} "
        f"alternating runs; Python {sys.version.split()[0]}; the machine was shared with "
        "other jobs).\n\n"
        "| what | taskerino | reference | ratio |\n|---|---|---|---|\n"
        f"{table}\n\n"
        f"Peak Python memory while streaming the zip: "
        f"{e['zip_stream_peak_python_bytes'] / mib:.2f} MiB for a {e['zip_bytes'] / mib:.1f} "
        f"MiB zip (pieces leave as they are made). gc freed {g['freed_bytes'] / mib:.2f} MiB "
        f"in {g['gc_s'] * 1000:.0f} ms.\n"
    )
    (RESULTS / "export.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
