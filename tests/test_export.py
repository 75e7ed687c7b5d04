"""Export of the run's enriched session (see `tests.enriched`): the MP4 plays with sound
(decoded with PyAV), SRT and WebVTT parse (webvtt-py), the Markdown links point at the
moments, nothing is overwritten without --force, no name leaves the folder, and the web
app's zip holds the same files."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import zipfile
from pathlib import Path

import av
import pytest
import webvtt

from taskerino.errors import InvalidInput
from taskerino.sessions import Taskerino
from taskerino.sessions.export import safe_name

from .cli_helpers import TASKERINO, run
from .enriched import Enriched
from .web_helpers import Served


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, enriched: Enriched) -> tuple[Path, str]:
    """A copy of the enriched session with a note and a flagged, commented screenshot."""
    home = enriched.copy(tmp_path_factory.mktemp("export") / "home")
    sid = enriched.session_id
    with Taskerino.open(home) as library:
        session = library.get(sid)
        library.add_note(sid, "check the *ledger* [later]", media_offset=3.25)
        shot = session.screenshots[-1]
        library.annotate_screenshot(sid, shot.id, comment="card declined here", flagged=True)
    return home, sid


def export(home: Path, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TASKERINO, "--home", str(home), "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),  # the user's umask, as a shell would set it
    )


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_export_writes_every_format(exported: tuple[Path, str], tmp_path: Path) -> None:
    home, sid = exported
    out = tmp_path / "out" / "here"
    done = export(home, sid, "--to", str(out))
    assert done.returncode == 0, done.stderr
    with Taskerino.open(home) as library:
        session = library.get(sid)
    names = files_in(out)
    shots = [n for n in names if n.startswith("screenshots/")]
    assert len(shots) == len(session.screenshots)
    assert sorted(set(names) - set(shots)) == [
        "session.json",
        "summary.md",
        "transcript.srt",
        "transcript.vtt",
        "video.mp4",
    ]
    # Exported files follow the user's umask, not the data folder's privacy.
    assert stat.S_IMODE((out / "video.mp4").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "screenshots").stat().st_mode) == 0o755
    assert stat.S_IMODE(out.stat().st_mode) == 0o755

    # The MP4 plays: a video and an audio stream, both decode, as long as the session.
    with av.open(str(out / "video.mp4")) as container:
        assert container.streams.video and container.streams.audio
        video_frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(out / "video.mp4")) as container:
        audio_frames = sum(1 for _ in container.decode(audio=0))
        assert container.duration is not None
        duration = container.duration / av.time_base
    # The screen was mostly still: a few changes, each followed by its repeats.
    assert video_frames >= 4 and audio_frames > 10
    assert session.total_duration is not None
    assert abs(duration - session.total_duration) < 1.5

    data = json.loads((out / "session.json").read_text())
    assert data["id"] == sid and data["transcript"] and data["media"]["type"] == "video"
    assert all(
        "path" not in a and a["url"].startswith("/api/media/") for a in data["attachments"].values()
    )


def test_transcript_srt_and_vtt_parse(exported: tuple[Path, str], tmp_path: Path) -> None:
    home, sid = exported
    out = tmp_path / "out"
    assert export(home, sid, "--to", str(out), "--format", "srt,vtt").returncode == 0
    assert files_in(out) == ["transcript.srt", "transcript.vtt"]
    with Taskerino.open(home) as library:
        lines = library.get(sid).transcript
    assert lines
    vtt = webvtt.read(str(out / "transcript.vtt"))
    srt = webvtt.from_srt(str(out / "transcript.srt"))
    for captions in (vtt.captions, srt.captions):
        assert [c.text for c in captions] == [" ".join(line.text.split()) for line in lines]
        starts = [c.start_time.in_milliseconds() / 1000 for c in captions]
        assert starts == [round(line.start_offset, 3) for line in lines]
    assert (out / "transcript.vtt").read_text().startswith("WEBVTT\n\n")
    # SRT strictly: number, times with commas, text, blank line.
    block = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n[^\n]+\n")
    text = (out / "transcript.srt").read_text()
    found = block.findall(text)
    assert [int(n) for n, _, _ in found] == list(range(1, len(lines) + 1))
    assert "\n\n".join(m.group(0) for m in block.finditer(text)) == text


def test_markdown_links_point_at_the_moments(exported: tuple[Path, str], tmp_path: Path) -> None:
    home, sid = exported
    out = tmp_path / "out"
    assert export(home, sid, "--to", str(out)).returncode == 0
    md = (out / "summary.md").read_text()
    with Taskerino.open(home) as library:
        session = library.get(sid)
    assert "`video.mp4#t=SECONDS`" in md and "`/sessions/ID?t=SECONDS`" in md
    section = {
        name: body for name, body in re.findall(r"## ([^\n]+)\n\n(.*?)(?=\n## |\Z)", md, re.S)
    }

    def moments(body: str) -> list[tuple[float, float]]:
        return [
            (float(video), float(page))
            for video, page in re.findall(
                rf"\]\(video\.mp4#t=([\d.]+)\) · \[review\]\(/sessions/{sid}\?t=([\d.]+)\)", body
            )
        ]

    assert session.video is not None
    chapters = [c.start_offset for c in session.video.chapters]
    assert chapters and moments(section["Chapters"]) == [(t, t) for t in chapters]
    for chapter in session.video.chapters:
        assert chapter.title.split()[0] in section["Chapters"]
    notes = moments(section["Notes"])
    assert notes == [(t, t) for t in (c.media_offset for c in session.context_items)]
    assert (3.25, 3.25) in notes
    assert r"check the \*ledger\* \[later\]" in section["Notes"]  # markup escaped
    flagged = [s for s in session.screenshots if s.flagged]
    assert len(flagged) == 1
    assert moments(section["Flagged screenshots"]) == [(flagged[0].media_offset,) * 2]
    assert "card declined here" in section["Flagged screenshots"]
    image = re.search(r"!\[[^\]]*\]\((screenshots/[^)]+)\)", section["Flagged screenshots"])
    assert image and (out / image[1]).is_file()


def test_existing_files_are_refused_without_force(
    exported: tuple[Path, str], tmp_path: Path
) -> None:
    home, sid = exported
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("mine")
    refused = export(home, sid, "--to", str(out))
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: refusing to overwrite") and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert files_in(out) == ["summary.md"] and (out / "summary.md").read_text() == "mine"
    forced = export(home, sid, "--to", str(out), "--force", "--format", "md")
    assert forced.returncode == 0, forced.stderr
    assert (out / "summary.md").read_text().startswith("# ")


def test_bad_formats_and_unknown_sessions(exported: tuple[Path, str], tmp_path: Path) -> None:
    home, sid = exported
    bad = export(home, sid, "--to", str(tmp_path / "a"), "--format", "mp4,gif")
    assert bad.returncode == 2 and "unknown export format 'gif'" in bad.stderr
    missing = export(home, "0" * 32, "--to", str(tmp_path / "b"))
    assert missing.returncode != 0 and missing.stderr.startswith("error:")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "name", ["../escape.webp", "../../etc/passwd", "a/../../b", "/abs", "a\\b", "x/./y", ""]
)
def test_names_outside_the_folder_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="must stay inside"):
        safe_name(name)
    assert safe_name("screenshots/001-shot..webp") == "screenshots/001-shot..webp"


def test_a_stored_name_with_dots_never_leaves_the_folder(
    exported: tuple[Path, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home_src, sid = exported
    import shutil

    shutil.copytree(home_src, home)
    with sqlite3.connect(home / "taskerino.db") as db:
        db.execute(
            "UPDATE attachments SET name='../../escaped.webp' WHERE id ="
            " (SELECT attachment_id FROM screenshots WHERE session_id=? LIMIT 1)",
            (sid,),
        )
    out = tmp_path / "out" / "inner"
    refused = export(home, sid, "--to", str(out))
    assert refused.returncode == 2, refused.stderr
    assert "refusing to export a file named" in refused.stderr and "'..'" in refused.stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("escaped.webp"))


def test_web_zip_streams_the_same_files(exported: tuple[Path, str], tmp_path: Path) -> None:
    home, sid = exported
    out = tmp_path / "out"
    assert export(home, sid, "--to", str(out)).returncode == 0
    served = Served(home, "--no-worker", "--port", "0")
    try:
        page = served.http.get(f"/sessions/{sid}")
        assert f'href="/api/sessions/{sid}/export.zip"' in page.text
        response = served.http.get(f"/api/sessions/{sid}/export.zip")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        assert "content-length" not in response.headers  # streamed, not built first
        assert f'filename="taskerino-{sid}.zip"' in response.headers["content-disposition"]
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        assert archive.testzip() is None
        top = f"taskerino-{sid}/"
        assert sorted(n.removeprefix(top) for n in archive.namelist()) == files_in(out)
        for name in ("session.json", "transcript.vtt", "summary.md", "video.mp4"):
            assert archive.read(top + name) == (out / name).read_bytes(), name
        only = served.http.get(f"/api/sessions/{sid}/export.zip?format=srt&format=md")
        names = zipfile.ZipFile(io.BytesIO(only.content)).namelist()
        assert sorted(names) == [top + "summary.md", top + "transcript.srt"]
        bad = served.http.get(f"/api/sessions/{sid}/export.zip?format=../x")
        assert bad.status_code == 422 and "unknown export format" in bad.json()["error"]
    finally:
        code, _, err = served.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_unknown_session_in_the_web_app(exported: tuple[Path, str]) -> None:
    home, _ = exported
    served = Served(home, "--no-worker", "--port", "0")
    try:
        missing = served.http.get(f"/api/sessions/{'0' * 32}/export.zip")
        assert missing.status_code == 404
    finally:
        served.stop()


def test_gc_then_export_says_what_was_removed(exported: tuple[Path, str], tmp_path: Path) -> None:
    home_src, sid = exported
    import shutil

    home = tmp_path / "home"
    shutil.copytree(home_src, home)
    with Taskerino.open(home) as library:
        library.gc(0)
    out = tmp_path / "out"
    done = export(home, sid, "--to", str(out))
    assert done.returncode == 0, done.stderr
    # No video and no screenshot left to export; the text is all there.
    assert files_in(out) == ["session.json", "summary.md", "transcript.srt", "transcript.vtt"]
    md = (out / "summary.md").read_text()
    assert "## Removed by the storage budget" in md and "video.mp4#t=" not in md
    served = Served(home, "--no-worker", "--port", "0")
    try:
        page = served.http.get(f"/sessions/{sid}").text
        assert "Removed by the storage budget" in page and "screenshot(s)" in page
    finally:
        served.stop()
    shown = run(home, "sessions", "show", sid)
    assert "removed by the storage budget" in shown.stdout


def test_the_zip_streams_in_small_pieces_and_stops_when_the_reader_goes() -> None:
    import threading

    from taskerino.sessions.export import ExportFile, Sink, zip_stream

    block = os.urandom(1 << 16)
    written = []

    def big(out: Sink) -> None:  # 64 MiB that does not compress
        for _ in range(1024):
            out.write(block)
            written.append(len(block))

    stream = zip_stream([ExportFile("video.mp4", big)], "top")
    pieces = [next(stream) for _ in range(20)]
    assert all(len(p) <= 1 << 17 for p in pieces)
    assert sum(written) < 1 << 25  # the writer waits for the reader: not all of it made
    stream.close()  # the client went away
    assert not any(t.name == "export-zip" for t in threading.enumerate())
    assert sum(written) < 1 << 26

    def small(out: Sink) -> None:
        out.write(b"hi")

    whole = b"".join(zip_stream([ExportFile("a.txt", small)], "t"))
    assert zipfile.ZipFile(io.BytesIO(whole)).read("t/a.txt") == b"hi"


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    from taskerino.errors import StorageError
    from taskerino.sessions.export import ExportFile, Sink, write_folder

    def fine(out: Sink) -> None:
        out.write(b"ok")

    def broken(out: Sink) -> None:
        out.write(b"half")
        raise OSError(28, "No space left on device")

    files = [ExportFile("a.txt", fine), ExportFile("sub/b.txt", broken)]
    with pytest.raises(StorageError, match="No space left"):
        write_folder(files, tmp_path / "new" / "export")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    with pytest.raises(StorageError):
        write_folder(files, tmp_path / "mine")
    assert list((tmp_path / "mine").iterdir()) == []


def test_a_video_without_sound_gets_the_session_audio_muxed_in(
    exported: tuple[Path, str], tmp_path: Path
) -> None:
    import shutil

    from taskerino.models import Attachment
    from taskerino.store.files import FolderBlobStore
    from taskerino.store.media import MediaLibrary
    from taskerino.store.sqlite import SQLiteStore

    home_src, sid = exported
    home = tmp_path / "home"
    shutil.copytree(home_src, home)
    with Taskerino.open(home) as library:
        session = library.get(sid)
        assert session.video and session.video.full_video_attachment_id
        assert session.audio_attachment_id is not None
        full = library.attachment_path(library.attachment(session.video.full_video_attachment_id))
    assert full is not None
    # The session's full video without its sound (as a video recorded apart from its audio).
    silent = tmp_path / "silent.mp4"
    with av.open(str(full)) as src, av.open(str(silent), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        originals = []
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            originals.append(bytes(packet))
            packet.stream = out
            dst.mux(packet)
    store = SQLiteStore(home / "taskerino.db")
    try:
        video = store.get_session(sid).video
        assert video is not None

        def attach(attachment: Attachment) -> None:
            video.full_video_attachment_id = attachment.id
            store.save_video(video)

        MediaLibrary(store, FolderBlobStore(home / "blobs")).ingest(
            silent, "video", "session.mp4", then=attach, source="keep"
        )
    finally:
        store.close()
    out_dir = tmp_path / "out"
    done = export(home, sid, "--to", str(out_dir), "--format", "mp4")
    assert done.returncode == 0, done.stderr
    with av.open(str(out_dir / "video.mp4")) as container:
        assert container.streams.video and container.streams.audio
        remuxed = [
            bytes(p) for p in container.demux(container.streams.video[0]) if p.dts is not None
        ]
    with av.open(str(out_dir / "video.mp4")) as container:
        assert sum(1 for _ in container.decode(audio=0)) > 10
    assert remuxed == originals  # the same H.264 packets: nothing re-encoded
