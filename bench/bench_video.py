"""Screen video against spec §10, in one run (writes bench/results/video.json and video.md).

Run: .venv/bin/python bench/bench_video.py [--seconds 60] [--seed 0] [--grid-seconds 30]
     [--memory-seconds 180] [--parts abcd]

a. One 1920x1080 display at 15 fps on the scripted workload (bench/workload.py) on a fresh
   Xvfb: Taskerino's CLI (`python -m taskerino record ... --video --source display:1`) and
   the reference `ffmpeg -f x11grab -framerate 15 -video_size 1920x1080 ... -c:v libx264
   -preset veryfast -pix_fmt yuv420p`, one after the other, each with a fresh run of the
   same deterministic workload. Sequential, not simultaneous: on 2 cores two recorders plus
   the workload (xterm, Xvfb) would contend for the CPU, so each would be measured under the
   other's load and their drop rates and CPU would depend on scheduling, not on their own
   cost; and the X server's CPU can only be attributed to one recorder when it runs alone.
   CPU: utime+stime of the recorder process (os.wait4: whole life, start-up and
   finalisation included) and the same read from /proc/<pid>/stat over the workload only
   (the "window"); the X server's CPU over the window is reported beside it (the grabbing
   work it does for the recorder, plus the workload's drawing, the same in both runs).
   Legibility: at each checkpoint of the workload (middle of an idle stretch) the workload
   saves a raw screenshot and the words its terminals show; Tesseract (`--psm 6`,
   OMP_THREAD_LIMIT=1) reads the raw screenshot and the decoded frame each recording shows at
   that moment; word recall = share of the terminals' words found (multiset).
b. Four `test:` sources at 1920x1080 into a 1920x1080 grid at 30 fps, in process (the
   recorder's test sources are 1280x720, so the bench swaps in 1920x1080 ones), with
   `Compositor.compose` wrapped in a timer.
c. End of a 1-hour session to its playable file: a stand-in of 60 one-minute chunks encoded
   with `ChunkedEncoder` faster than real time from real screenshots of part a (typing,
   scrolling, a window switch and a static stretch with keepalives every minute), stored
   in a blob store like the recorder does, then the end path timed piece by piece.
d. Resident memory of the CLI recording display:1 while the workload loops, sampled every
   10 s from /proc/<pid>/status; growth per hour from a least-squares slope.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

import taskerino.capture.synthetic as synthetic
import taskerino.recording.video as video_mod
import video_variants
from taskerino.capture.synthetic import TestPatternSource
from taskerino.frame import Frame
from taskerino.media import ChunkedEncoder, ChunkInfo, Compositor
from taskerino.models import Session, SessionConfig, SessionVideo, new_id, parse_time, utc_now
from taskerino.sessions import StartRequest, Taskerino
from taskerino.store.files import FolderBlobStore
from taskerino.store.media import MediaLibrary, sha256_file
from taskerino.virtual import VirtualDisplay
from workload import Workload, words_of

RESULTS = Path(__file__).parent / "results"
FPS, WIDTH, HEIGHT = 15, 1920, 1080
TICK = os.sysconf("SC_CLK_TCK")
TARGETS = {
    "cpu_ratio": 0.5,
    "bytes_ratio": 0.5,
    "drop_rate": 0.01,
    "recall_points": 2.0,
    "grid_fps": 30.0,
    "compose_ms": 2.0,
    "end_to_file_s": 2.0,
    "rss_mb_per_hour": 1.0,
}


# --- helpers ------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def xvfb_pid(display: VirtualDisplay) -> int:
    return int(Path(f"/tmp/.X{display.number}-lock").read_text().strip())


def wait_child(proc: subprocess.Popen[bytes], timeout: float) -> tuple[float, float]:
    """Reap `proc` with os.wait4: (its whole-life CPU seconds, the wall time it exited)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime, time.monotonic()
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{proc.args!r} did not stop within {timeout} s")
        time.sleep(0.01)


def ocr(image: Path) -> list[str]:
    out = subprocess.run(
        ["tesseract", str(image), "-", "--psm", "6"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    return words_of(out.stdout)


def recall(truth: list[str], found: list[str]) -> tuple[int, int]:
    """(words of `truth` found in `found`, counted as multisets; len(truth))."""
    t, f = Counter(truth), Counter(found)
    return sum((t & f).values()), sum(t.values())


def frames_at(
    path: Path, times: list[float], start: float = 0.0
) -> Iterator[tuple[float, float, Frame]]:
    """For each time (seconds on the file's timeline minus `start`), the frame shown then:
    (asked time, that frame's time, BGR picture). `times` must be increasing."""
    with av.open(str(path)) as container:
        wanted = list(times)
        shown: tuple[float, Frame] | None = None
        for frame in container.decode(video=0):
            t = float(frame.time) - start
            while wanted and t > wanted[0]:
                if shown is not None:
                    yield wanted[0], shown[0], shown[1]
                wanted.pop(0)
            if not wanted:
                return
            shown = (t, np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
        for w in wanted:  # past the last frame: it stays on screen
            if shown is not None:
                yield w, shown[0], shown[1]


def read_bgr(path: Path) -> Frame:
    image = cv2.imread(str(path))
    if image is None:
        raise RuntimeError(f"cannot read {path}")
    return np.asarray(image, np.uint8)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else 0.0


# --- a. one display on the workload ---------------------------------------------------------
def taskerino_command(variant: str) -> list[str]:
    """The CLI, or the CLI with bench/video_variants.py patches applied."""
    if not variant:
        return [sys.executable, "-m", "taskerino"]
    return [sys.executable, str(Path(__file__).parent / "video_variants.py"), variant, "--"]


def record_command(
    home: Path, variant: str, duration: float, source: str = "display:1"
) -> list[str]:
    """`taskerino record` of `source` at the benchmark's size and rate, printing JSON."""
    return [
        *taskerino_command(variant),
        "--home",
        str(home),
        "record",
        "--no-screenshots",
        "--video",
        "--source",
        source,
        "--fps",
        str(FPS),
        "--size",
        f"{WIDTH}x{HEIGHT}",
        "--duration",
        str(duration),
        "--json",
    ]


def record_taskerino(
    display: VirtualDisplay,
    work: Workload,
    folder: Path,
    variant: str = "",
    source: str = "display:1",
) -> dict[str, Any]:
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DISPLAY": display.name}
    cmd = record_command(home, variant, work.seconds + 300, source)
    out = (folder / "taskerino.json").open("wb")
    launched = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
    # Live once the first frame is in a chunk file.
    while not list(home.glob("staging/*/video/chunk-00000.mp4")):
        if proc.poll() is not None:
            raise RuntimeError(
                f"taskerino record failed: {proc.stderr.read()!r}"
                if proc.stderr
                else "taskerino record failed"
            )
        time.sleep(0.02)
    ready = time.monotonic() - launched
    xpid = xvfb_pid(display)
    cpu0, x0 = cpu_seconds(proc.pid), cpu_seconds(xpid)
    manifest = work.run()
    cpu1, x1 = cpu_seconds(proc.pid), cpu_seconds(xpid)
    asked = time.monotonic()
    proc.send_signal(signal.SIGINT)
    total, exited = wait_child(proc, 120)
    out.close()
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"taskerino record exited {proc.returncode}: {err[-2000:]}")
    data = json.loads((folder / "taskerino.json").read_text())
    video = data["video"]
    path = Path(data["attachments"][video["full_video_attachment_id"]]["path"])
    manager = Taskerino.open(home, recover=False)
    try:
        stats = manager.stats(data["id"])
    finally:
        manager.close()
    start_wall = parse_time(data["start_time"]).timestamp()
    return {
        "cpu_s": total,
        "cpu_window_s": cpu1 - cpu0,
        "xvfb_window_s": x1 - x0,
        "window_s": manifest["end_wall"] - manifest["start_wall"],
        "ready_s": ready,
        "stop_to_exit_s": exited - asked,
        "bytes": path.stat().st_size,
        "chunk_bytes": sum(c["bytes"] for c in video["chunks"]),
        "chunks": len(video["chunks"]),
        "duration_s": video["duration"],
        "frames_captured": stats.frames_captured,
        "frames_processed": stats.frames_processed,
        "frames_dropped": stats.frames_dropped,
        "drop_rate": stats.drop_rate,
        "encoded_frames": sum(c["frames"] for c in video["chunks"]),
        "file": str(path),
        "timeline_zero_wall": start_wall,
        "manifest": manifest,
    }


FFMPEG_CODEC = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")


def record_ffmpeg(
    display: VirtualDisplay,
    work: Workload,
    folder: Path,
    codec: tuple[str, ...] = FFMPEG_CODEC,
    filename: str = "ffmpeg.mp4",
) -> dict[str, Any]:
    """The reference recorder (or, with another `codec`, e.g. a lossless capture)."""
    path = folder / filename
    cmd = [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-y",
        "-f",
        "x11grab",
        "-framerate",
        str(FPS),
        "-video_size",
        f"{WIDTH}x{HEIGHT}",
        "-i",
        f"{display.name}+0,0",
        *codec,
        str(path),
    ]
    launched = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = threading.Event()
    zero: list[float] = []
    log: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        buf = b""
        while chunk := os.read(proc.stderr.fileno(), 4096):
            if not started.is_set():
                buf += chunk
                if b"Press [q]" in buf or b"frame=" in buf:
                    zero.append(time.time())
                    started.set()
            log.append(chunk.decode(errors="replace"))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if not started.wait(30):
        proc.kill()
        raise RuntimeError("ffmpeg did not start: " + "".join(log)[-2000:])
    ready = time.monotonic() - launched
    xpid = xvfb_pid(display)
    cpu0, x0 = cpu_seconds(proc.pid), cpu_seconds(xpid)
    manifest = work.run()
    cpu1, x1 = cpu_seconds(proc.pid), cpu_seconds(xpid)
    asked = time.monotonic()
    proc.send_signal(signal.SIGINT)
    total, exited = wait_child(proc, 120)
    reader.join(5)
    text = "".join(log)
    dup = re.findall(r"dup=(\d+) drop=(\d+)", text)
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.demux(video=0))
    return {
        "cpu_s": total,
        "cpu_window_s": cpu1 - cpu0,
        "xvfb_window_s": x1 - x0,
        "window_s": manifest["end_wall"] - manifest["start_wall"],
        "ready_s": ready,
        "stop_to_exit_s": exited - asked,
        "bytes": path.stat().st_size,
        "encoded_frames": frames,
        "dup_drop": [int(v) for v in dup[-1]] if dup else None,
        "file": str(path),
        "timeline_zero_wall": zero[0],
        "manifest": manifest,
    }


def legibility(runs: dict[str, dict[str, Any]], folder: Path) -> dict[str, Any]:
    """OCR raw screenshots and the decoded frames shown at the same moments."""
    jobs: list[tuple[str, str, Path, list[str]]] = []  # (recorder, checkpoint, image, truth)
    alignment: dict[str, list[dict[str, float]]] = {}
    for name, run in runs.items():
        checkpoints = run["manifest"]["checkpoints"]
        times = [c["wall"] - run["timeline_zero_wall"] for c in checkpoints]
        # The Taskerino file keeps the media offsets; ffmpeg's starts at 0 at its first frame.
        alignment[name] = []
        for c, (asked, shown, picture) in zip(
            checkpoints, frames_at(Path(run["file"]), times), strict=False
        ):
            image = folder / f"{name}-{c['name']}.png"
            cv2.imwrite(str(image), picture)
            raw = read_bgr(Path(c["image"]))
            diff = float(np.abs(raw.astype(np.int16) - picture.astype(np.int16)).mean())
            alignment[name].append({"asked_s": asked, "frame_s": shown, "mean_abs_diff": diff})
            jobs.append((name, c["name"], image, c["words"]))
            jobs.append((f"{name}-raw", c["name"], Path(c["image"]), c["words"]))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        texts = list(pool.map(lambda job: ocr(job[2]), jobs))
    raw_words = {(j[0], j[1]): t for j, t in zip(jobs, texts, strict=True) if j[0].endswith("-raw")}
    totals: dict[str, list[int]] = {}
    per_checkpoint: list[dict[str, Any]] = []
    for (who, cp, _image, truth), found in zip(jobs, texts, strict=True):
        hit, n = recall(truth, found)
        acc = totals.setdefault(who, [0, 0, 0, 0])
        acc[0] += hit
        acc[1] += n
        row: dict[str, Any] = {"who": who, "checkpoint": cp, "recall": hit / max(1, n)}
        if not who.endswith("-raw"):  # the brief's literal measure: raw OCR as the truth
            rhit, rn = recall(raw_words[(f"{who}-raw", cp)], found)
            acc[2] += rhit
            acc[3] += rn
            row["recall_vs_raw_ocr"] = rhit / max(1, rn)
        per_checkpoint.append(row)
    summary = {
        who: {
            "recall": v[0] / max(1, v[1]),
            "words": v[1],
            **({"recall_vs_raw_ocr": v[2] / max(1, v[3])} if v[3] else {}),
        }
        for who, v in totals.items()
    }
    return {"summary": summary, "per_checkpoint": per_checkpoint, "alignment": alignment}


def same_screens(a: dict[str, Any], b: dict[str, Any]) -> list[float]:
    """Share of differing pixels between the two runs' raw checkpoint screenshots."""
    out = []
    for ca, cb in zip(a["manifest"]["checkpoints"], b["manifest"]["checkpoints"], strict=False):
        ia, ib = read_bgr(Path(ca["image"])), read_bgr(Path(cb["image"]))
        out.append(float(np.any(ia != ib, axis=2).mean()))
    return out


def part_a(seconds: float, seed: int, folder: Path, variant: str = "") -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    with VirtualDisplay() as display:
        for name in ("taskerino", "ffmpeg"):
            sub = folder / name
            sub.mkdir()
            work = Workload(display.name, seconds, seed, sub / "workload")
            print(f"a. recording the workload with {name} ...", flush=True)
            if name == "taskerino":
                runs[name] = record_taskerino(display, work, sub, variant)
            else:
                runs[name] = record_ffmpeg(display, work, sub)
    print("a. OCR ...", flush=True)
    legible = legibility(runs, folder)
    t, f = runs["taskerino"], runs["ffmpeg"]
    s = legible["summary"]
    result = {
        "taskerino": {k: v for k, v in t.items() if k != "manifest"},
        "ffmpeg": {k: v for k, v in f.items() if k != "manifest"},
        "cpu_ratio": t["cpu_s"] / f["cpu_s"],
        "cpu_window_ratio": t["cpu_window_s"] / f["cpu_window_s"],
        "cpu_window_with_xvfb_ratio": (t["cpu_window_s"] + t["xvfb_window_s"])
        / (f["cpu_window_s"] + f["xvfb_window_s"]),
        "bytes_ratio": t["bytes"] / f["bytes"],
        "drop_rate": t["drop_rate"],
        "recall": {k: v["recall"] for k, v in s.items()},
        "recall_points_taskerino": 100 * (s["taskerino"]["recall"] - s["taskerino-raw"]["recall"]),
        "recall_points_ffmpeg": 100 * (s["ffmpeg"]["recall"] - s["ffmpeg-raw"]["recall"]),
        "legibility": legible,
        "workload": {
            "seconds": seconds,
            "seed": seed,
            "checkpoints": len(t["manifest"]["checkpoints"]),
            "max_late_s": max(t["manifest"]["max_late_s"], f["manifest"]["max_late_s"]),
            "raw_screens_differing_pixels": same_screens(t, f),
        },
    }
    return result


# --- b. four 1920x1080 sources into a grid at 30 fps -------------------------------------------
def part_b(seconds: float, folder: Path, variant: str = "") -> dict[str, Any]:
    times: list[float] = []
    restore = (video_mod.VideoRecorder._capture_loop, ChunkedEncoder.__init__)
    if variant:
        video_variants.apply(variant)
    original = Compositor.compose

    def timed(self: Compositor, frames: Any, boxes: Any = None) -> Frame:
        started = time.perf_counter()
        try:
            return original(self, frames, boxes)
        finally:
            times.append(time.perf_counter() - started)

    def big_source(name: str) -> TestPatternSource:
        return TestPatternSource(name, WIDTH, HEIGHT)

    patched = vars(synthetic)  # capture.open_source takes test sources from here
    saved = patched["TestPatternSource"]
    Compositor.compose = timed  # type: ignore[method-assign]
    patched["TestPatternSource"] = big_source
    (folder / "home").mkdir(parents=True, exist_ok=True)
    manager = Taskerino.open(folder / "home", recover=False)
    try:
        config = SessionConfig(
            screenshots=False,
            video=True,
            compositor="grid",
            fps=30,
            width=WIDTH,
            height=HEIGHT,
            sources=["test:red", "test:green", "test:blue", "test:yellow"],
        )
        usage0 = os.times()
        session = manager.start(StartRequest(name="grid bench", config=config))
        started = time.monotonic()
        samples = []
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(1.0)
            s = manager.stats(session.id)
            samples.append(
                {
                    "t": elapsed,
                    "fps": s.fps,
                    "dropped": s.frames_dropped,
                    "processed": s.frames_processed,
                    "captured": s.frames_captured,
                    "lag_ms": s.encode_lag_ms,
                }
            )
        final = manager.stats(session.id)
        wall = time.monotonic() - started
        ended = manager.end(session.id)
        usage1 = os.times()
    finally:
        manager.close()
        Compositor.compose = original  # type: ignore[method-assign]
        patched["TestPatternSource"] = saved
        video_mod.VideoRecorder._capture_loop = restore[0]  # type: ignore[method-assign]
        ChunkedEncoder.__init__ = restore[1]  # type: ignore[method-assign]
    ms = [t * 1000 for t in times[5:]]
    steady = [s["fps"] for s in samples if s["t"] > 3.0]
    video = ended.video
    return {
        "seconds": wall,
        "captured_fps": final.frames_captured / wall,
        "encoded_fps": final.frames_processed / wall,
        "stats_fps_mean": float(np.mean(steady)) if steady else 0.0,
        "stats_fps_min": float(np.min(steady)) if steady else 0.0,
        "frames_captured": final.frames_captured,
        "frames_processed": final.frames_processed,
        "frames_dropped": final.frames_dropped,
        "drop_rate": final.drop_rate,
        "encode_lag_ms": final.encode_lag_ms,
        "compose_ms_mean": float(np.mean(ms)),
        "compose_ms_median": pct(ms, 50),
        "compose_ms_p99": pct(ms, 99),
        "compositions": len(ms),
        "process_cpu_s": (usage1.user + usage1.system) - (usage0.user + usage0.system),
        "video_duration_s": video.duration if video else 0.0,
        "samples": samples,
    }


# --- c. end of a one-hour session ------------------------------------------------------------
def screen_pictures(images: list[Path]) -> list[Frame]:
    if images:
        return [np.asarray(cv2.cvtColor(read_bgr(p), cv2.COLOR_BGR2BGRA), np.uint8) for p in images]
    # No part a: synthetic terminal-like screens.
    rng = np.random.default_rng(0)
    out = []
    for k in range(4):
        img = np.full((HEIGHT, WIDTH, 4), (64, 52, 46, 255), np.uint8)
        img[0:530, 0:948] = 255
        img[0:530, 960:1908] = 255
        img[540:1070, 960 * (k % 2) : 960 * (k % 2) + 948] = 255
        for row in range(90):
            x = 0 if row < 30 else 960
            y = 14 + 17 * (row % 30) + (540 if row >= 60 else 0)
            text = " ".join(f"{w:x}" for w in rng.integers(0, 1 << 20, 8))
            cv2.putText(img, text, (x + 4, y), cv2.FONT_HERSHEY_PLAIN, 1.0, (0, 0, 0, 255))
        out.append(img)
    return out


def standin_minute(
    minute: int, pictures: list[Frame], tall: Frame
) -> Iterator[tuple[float, Frame]]:
    """The changed frames of one minute of the stand-in session: (media time, picture).

    At 15 fps: 10 s of typing (a few characters appear each frame), 5 s of scrolling in one
    quarter (two lines a frame), a window switch (whole picture changes); the rest of the
    minute (~45 s) is static. The picture yielded is changed in place afterwards: use it
    before asking for the next one.
    """
    t0 = minute * 60.0
    base = pictures[minute % len(pictures)].copy()
    other = pictures[(minute + 1) % len(pictures)]
    tick = 0
    for k in range(150):  # typing: 1-2 characters a frame on one line
        x = 964 + 8 * (k % 110)
        y = 17 * (5 + (k // 110))
        base[y : y + 17, x : x + 16] = other[y : y + 17, x : x + 16]
        yield t0 + tick / FPS, base
        tick += 1
    scroll = (minute * 340) % (tall.shape[0] - 540)
    for k in range(75):  # scrolling the bottom-right quarter, 2 lines a frame
        y = (scroll + 34 * k) % (tall.shape[0] - 540)
        base[540:1080, 960:] = tall[y : y + 540]
        yield t0 + tick / FPS, base
        tick += 1
    yield t0 + tick / FPS, other.copy()  # window switch


def tall_strip(pictures: list[Frame]) -> Frame:
    """The right halves of the pictures stacked: what the scrolling quarter shows."""
    return np.vstack([p[:, 960:] for p in pictures])


def encode_minutes(
    args: tuple[Path, int, int, list[Path], float | None], chunk_seconds: float = 60.0
) -> dict[str, Any]:
    """Encode minutes [first, first+count) of the stand-in session into `folder`, with the
    encoder's keyframe interval `keyint_seconds` (None: the encoder's default), in chunks
    of `chunk_seconds`.

    Each minute is `standin_minute`; in its static rest the encoder gets a keepalive every
    0.25 s as the recorder does.
    """
    folder, first, count, images, keyint = args
    pictures = screen_pictures(images)
    tall = tall_strip(pictures)
    options: dict[str, Any] = {} if keyint is None else {"keyint_seconds": keyint}
    encoder = ChunkedEncoder(folder, WIDTH, HEIGHT, FPS, chunk_seconds, **options)
    started = time.perf_counter()
    changed = 0
    close_s = 0.0
    for minute in range(first, first + count):
        t0, tick = minute * 60.0, 0
        for t, picture in standin_minute(minute, pictures, tall):
            encoder.encode(picture, t)
            tick += 1
        changed += tick
        t = t0 + tick / FPS
        while t < t0 + 60.0 - 1e-9:  # static: keepalives
            encoder.keepalive(t)
            t += 0.25
    end = (first + count) * 60.0
    closing = time.perf_counter()
    last = encoder.close(end)
    close_s = time.perf_counter() - closing
    infos = [*encoder.chunks]
    return {
        "chunks": [
            (str(i.path), i.index, i.start_offset, i.end_offset, i.frames, i.bytes) for i in infos
        ],
        "encode_s": time.perf_counter() - started,
        "changed_frames": changed,
        "keepalives": encoder.frames_repeated,
        "close_last_s": close_s,
        "last": last is not None,
    }


def part_c(folder: Path, images: list[Path], minutes: int = 60) -> dict[str, Any]:
    workers = max(1, min(2, os.cpu_count() or 1))
    per = [minutes // workers + (1 if i < minutes % workers else 0) for i in range(workers)]
    firsts = [sum(per[:i]) for i in range(workers)]
    jobs = [(folder / f"enc{i}", firsts[i], per[i], images, None) for i in range(workers)]
    encoded_at = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(encode_minutes, jobs)
    encode_wall = time.perf_counter() - encoded_at
    infos = [
        ChunkInfo(Path(c[0]), n, c[2], c[3], c[4], c[5])
        for n, c in enumerate(c for part in parts for c in part["chunks"])
    ]
    (folder / "home").mkdir(parents=True, exist_ok=True)
    manager = Taskerino.open(folder / "home", recover=False)
    timings: dict[str, float] = {}
    try:
        media = MediaLibrary(manager._store, FolderBlobStore(manager.layout.blobs))  # internals
        store = media.store
        session = Session(
            id=new_id(),
            name="one hour stand-in",
            start_time=utc_now(),
            config=SessionConfig(
                screenshots=False, video=True, sources=["display:1"], compositor="passthrough"
            ),
        )
        video = SessionVideo(
            id=new_id(),
            session_id=session.id,
            width=WIDTH,
            height=HEIGHT,
            fps=FPS,
            sources=["display:1"],
            compositor="passthrough",
            chunking_status="processing",
        )
        with store.transaction():
            store.create_session(session)
        store.save_video(video)
        # What the recorder's chunk thread did during the hour (not timed).
        stored: dict[int, Path] = {}
        for info in infos[:-1]:
            path = video_mod.store_chunk(media, video.id, info)
            assert path is not None
            stored[info.index] = path
        staging = manager.layout.staging / session.id / "video"
        staging.mkdir(parents=True, exist_ok=True)
        # Timed from here: what VideoRecorder.stop and Lifecycle._finish do after the
        # threads have stopped (closing the last chunk is timed in the encoder process).
        patched = vars(video_mod)
        original_join, original_stage = patched["join_chunks"], media.stage

        def timed_join(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original_join(*args, **kwargs)
            finally:
                timings["join_chunks_s"] = time.perf_counter() - t

        def timed_stage(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original_stage(*args, **kwargs)
            finally:
                timings["stage_full_file_s"] = time.perf_counter() - t

        patched["join_chunks"] = timed_join
        media.stage = timed_stage  # type: ignore[method-assign]
        try:
            t = time.perf_counter()
            last = video_mod.store_chunk(media, video.id, infos[-1])
            assert last is not None
            stored[infos[-1].index] = last
            timings["store_last_chunk_s"] = time.perf_counter() - t
            t = time.perf_counter()
            stored.update(video_mod.store_leftover_chunks(media, video.id, staging, stored))
            timings["list_chunks_s"] = time.perf_counter() - t
            t = time.perf_counter()
            chunks = [stored[i] for i in sorted(stored)]
            finisher = video_mod.finish_video(media, video, chunks, staging, None)
            timings["finish_video_s"] = time.perf_counter() - t
            assert finisher is not None
            t = time.perf_counter()
            with store.transaction():
                row = store.session_for_update(session.id)
                finisher(row)
                store.update_session(row)
            timings["attach_commit_s"] = time.perf_counter() - t
        finally:
            patched["join_chunks"] = original_join
            del media.stage
        ended = store.get_session(session.id).video
        assert ended is not None and ended.full_video_attachment_id is not None
        attachment = store.get_attachment(ended.full_video_attachment_id)
        full = media.local_path(attachment)
        assert full is not None
        # The alternative: move the joined file into the blob store instead of copying it.
        spare = staging / "spare.mp4"
        shutil.copyfile(full, spare)
        os.sync()
        t = time.perf_counter()
        digest = sha256_file(spare)
        timings["sha256_full_file_s"] = time.perf_counter() - t
        spare.unlink()
        with av.open(str(full)) as container:
            stream = container.streams.video[0]
            packets = sum(1 for p in container.demux(stream) if p.size)
        result = {
            "minutes": minutes,
            "chunks": len(infos),
            "chunk_bytes": sum(i.bytes for i in infos),
            "full_file_bytes": full.stat().st_size,
            "full_file_packets": packets,
            "full_duration_s": ended.duration,
            "digest_matches": digest == attachment.hash,
            "encode_wall_s": encode_wall,
            "encoders": workers,
            "changed_frames": sum(p["changed_frames"] for p in parts),
            "keepalives": sum(p["keepalives"] for p in parts),
            "close_last_chunk_s": parts[-1]["close_last_s"],
            **timings,
        }
    finally:
        manager.close()
    result["end_to_file_s"] = (
        result["close_last_chunk_s"]
        + timings["store_last_chunk_s"]
        + timings["list_chunks_s"]
        + timings["finish_video_s"]
        + timings["attach_commit_s"]
    )
    return result


# --- d. memory over a long-ish recording ------------------------------------------------------
def part_d(seconds: float, folder: Path, variant: str = "") -> dict[str, Any]:
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    with VirtualDisplay() as display:
        env = {**os.environ, "DISPLAY": display.name}
        cmd = record_command(home, variant, seconds + 600)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not list(home.glob("staging/*/video/chunk-00000.mp4")):
            if proc.poll() is not None:
                raise RuntimeError("taskerino record failed")
            time.sleep(0.05)
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - started, rss_kib(proc.pid)))
                stop.wait(10.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        loop = 0
        while time.monotonic() - started < seconds:
            left = seconds - (time.monotonic() - started)
            if left < 8:
                time.sleep(left)
                break
            Workload(display.name, min(60.0, left - 2), 100 + loop, folder / f"loop{loop}").run()
            loop += 1
        stop.set()
        sampler.join()
        proc.send_signal(signal.SIGINT)
        wait_child(proc, 120)
    t = np.array([s[0] for s in samples])
    mib = np.array([s[1] for s in samples]) / 1024
    warm = t >= 30.0  # start-up allocations (x264, buffers) settle in the first seconds
    slope = float(np.polyfit(t[warm], mib[warm], 1)[0]) * 3600 if warm.sum() >= 3 else 0.0
    return {
        "seconds": seconds,
        "workload_loops": loop,
        "rss_first_mib": float(mib[0]) if len(mib) else 0.0,
        "rss_after_30s_mib": float(mib[warm][0]) if warm.any() else 0.0,
        "rss_last_mib": float(mib[-1]) if len(mib) else 0.0,
        "rss_max_mib": float(mib.max()) if len(mib) else 0.0,
        "growth_mib_per_hour": slope,
        "samples": [{"t": float(a), "rss_mib": float(b)} for a, b in zip(t, mib, strict=True)],
    }


# --- report ---------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    a = results.get("a")
    if a:
        t, f = a["taskerino"], a["ffmpeg"]
        rows += [
            (
                "a. CPU s, whole process (taskerino / ffmpeg)",
                f"{t['cpu_s']:.1f} / {f['cpu_s']:.1f} = {a['cpu_ratio']:.2f}x",
                "≤ 0.5x",
                verdict(a["cpu_ratio"] <= TARGETS["cpu_ratio"]),
            ),
            (
                "a. CPU s, workload window only",
                f"{t['cpu_window_s']:.1f} / {f['cpu_window_s']:.1f} = {a['cpu_window_ratio']:.2f}x",
                "≤ 0.5x",
                verdict(a["cpu_window_ratio"] <= TARGETS["cpu_ratio"]),
            ),
            (
                "a. X server CPU s in the window (taskerino run / ffmpeg run)",
                f"{t['xvfb_window_s']:.1f} / {f['xvfb_window_s']:.1f}",
                "-",
                "info",
            ),
            (
                "a. bytes (taskerino / ffmpeg)",
                f"{t['bytes'] / 1e6:.2f} MB / {f['bytes'] / 1e6:.2f} MB = {a['bytes_ratio']:.2f}x",
                "≤ 0.5x",
                verdict(a["bytes_ratio"] <= TARGETS["bytes_ratio"]),
            ),
            (
                "a. taskerino drop rate",
                f"{100 * t['drop_rate']:.2f} % ({t['frames_dropped']:.0f} of "
                f"{t['frames_processed'] + t['frames_dropped']:.0f})",
                "< 1 %",
                verdict(t["drop_rate"] < TARGETS["drop_rate"]),
            ),
            (
                "a. word recall raw / decoded, taskerino run",
                f"{100 * a['recall']['taskerino-raw']:.1f} / {100 * a['recall']['taskerino']:.1f}"
                f" % ({a['recall_points_taskerino']:+.1f} pt)",
                "within 2 pt",
                verdict(a["recall_points_taskerino"] >= -TARGETS["recall_points"]),
            ),
            (
                "a. word recall raw / decoded, ffmpeg run",
                f"{100 * a['recall']['ffmpeg-raw']:.1f} / {100 * a['recall']['ffmpeg']:.1f}"
                f" % ({a['recall_points_ffmpeg']:+.1f} pt)",
                "-",
                "reference",
            ),
        ]
    b = results.get("b")
    if b:
        rows += [
            (
                "b. 4x1080p grid @30: encoded fps (stats fps min)",
                f"{b['encoded_fps']:.1f} ({b['stats_fps_min']:.1f})",
                "30",
                verdict(b["stats_fps_min"] >= 29.0 and b["encoded_fps"] >= 29.0),
            ),
            (
                "b. drop rate",
                f"{100 * b['drop_rate']:.2f} %",
                "< 1 %",
                verdict(b["drop_rate"] < TARGETS["drop_rate"]),
            ),
            (
                "b. composition ms mean / median / p99",
                f"{b['compose_ms_mean']:.2f} / {b['compose_ms_median']:.2f} / "
                f"{b['compose_ms_p99']:.2f}",
                "≤ 2 ms",
                verdict(b["compose_ms_median"] <= TARGETS["compose_ms"]),
            ),
        ]
    c = results.get("c")
    if c:
        rows += [
            (
                "c. end of 1-hour stand-in → playable file attached",
                f"{c['end_to_file_s']:.2f} s (join {c['join_chunks_s']:.2f}, stage "
                f"{c['stage_full_file_s']:.2f})",
                "≤ 2 s",
                verdict(c["end_to_file_s"] <= TARGETS["end_to_file_s"]),
            ),
        ]
    d = results.get("d")
    if d:
        rows += [
            (
                "d. RSS growth (MiB/hour, slope after 30 s)",
                f"{d['growth_mib_per_hour']:+.1f} ({d['rss_after_30s_mib']:.1f} → "
                f"{d['rss_last_mib']:.1f} MiB in {d['seconds']:.0f} s)",
                "< 1 MB/hour",
                verdict(d["growth_mib_per_hour"] < TARGETS["rss_mb_per_hour"]),
            ),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="workload length (a)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid-seconds", type=float, default=30.0)
    parser.add_argument("--memory-seconds", type=float, default=180.0)
    parser.add_argument("--minutes", type=int, default=60, help="stand-in length (c)")
    parser.add_argument("--parts", default="abcd")
    parser.add_argument(
        "--variant",
        default="",
        help="patches from bench/video_variants.py for the recorder (a, b, d)",
    )
    parser.add_argument("--name", default="video", help="results file name")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    scratch = Path(tempfile.mkdtemp(prefix="taskerino-bench-video-"))
    try:
        if "a" in args.parts:
            (scratch / "a").mkdir()
            results["a"] = part_a(args.seconds, args.seed, scratch / "a", args.variant)
        if "b" in args.parts:
            print("b. four 1080p sources into a grid at 30 fps ...", flush=True)
            (scratch / "b").mkdir()
            results["b"] = part_b(args.grid_seconds, scratch / "b", args.variant)
        if "c" in args.parts:
            print("c. one-hour stand-in: encoding 60 chunks ...", flush=True)
            (scratch / "c").mkdir()
            images = sorted((scratch / "a").glob("taskerino/workload/c*.png"))
            results["c"] = part_c(scratch / "c", images, args.minutes)
        if "d" in args.parts and args.memory_seconds > 0:
            print(f"d. memory over {args.memory_seconds:.0f} s ...", flush=True)
            (scratch / "d").mkdir()
            results["d"] = part_d(args.memory_seconds, scratch / "d", args.variant)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    rows = table(results)
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'what':<{width}}  {'measured':<44}{'target':<14}verdict")
    for what, got, target, ok in rows:
        print(f"{what:<{width}}  {got:<44}{target:<14}{ok}")
    load = os.getloadavg()
    payload = {
        "benchmark": "video",
        "command": "python bench/bench_video.py " + " ".join(sys.argv[1:]),
        "variant": args.variant or None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": load,
        "targets": TARGETS,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = [
        "# Video benchmark (spec §10)",
        "",
        f"`{payload['command']}` — {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        "| what | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
