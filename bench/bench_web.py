"""The review web app against spec §10, in one run (writes bench/results/NAME.json, NAME.md
and NAME-seek.png; NAME defaults to `web`).

Run: .venv/bin/python bench/bench_web.py [--parts abcd] [--minutes 60] [--keyints 2,5,10,30]
     [--clicks 120] [--loads 10] [--requests 200] [--reference-minutes 10] [--seed 0]

Everything runs on this machine at once (the bench, `taskerino serve`, Chromium): on a
machine with two shared cores the figures are noisy, and each is reported with its spread.

a. Seek. A 1-hour 1920x1080 session at 15 fps is assembled the way the recorder leaves it:
   the stand-in workload of bench_video.py part c (typing, scrolling and a window switch
   every minute, then a static stretch with keepalives), drawn from real screenshots of the
   scripted xterm workload (bench/workload.py on Xvfb), encoded by `ChunkedEncoder` into
   one-minute chunks, stored and joined by the recorder's own end path (`store_chunk`,
   `finish_video`); screenshots every 2 minutes, notes at random offsets, OCR texts,
   transcript lines, activity and chapters so that the timeline is full. The real
   `taskerino serve` (uvicorn on loopback) serves it to Debian's Chromium, driven by
   Playwright. Clicks on timeline items (notes at random offsets, and the screenshots) with
   the real mouse: latency = the click event's timestamp to the `seeked` event, both on the
   page's performance.now() clock. Reference, in a fresh page: the same offsets seeked by
   setting `currentTime` from script (no click, no handler). Also, for each offset, how far
   it is from the keyframe before it (frames, seconds, bytes: what a seek has to fetch and
   decode) and the time PyAV (FFmpeg's H.264 decoder) takes to decode that far, and the
   media requests Chromium made during each seek. The same session is built with each
   keyframe interval of `--keyints` (seconds of frames, the encoder's `keyint_seconds`),
   giving seek latency against bytes per hour; bytes are compared with ffmpeg's libx264
   veryfast at constant 15 fps (what `ffmpeg -f x11grab` records) on the first
   `--reference-minutes` minutes of the same stand-in frames.
b. Page ready: the session page of that hour (recorder's default keyframe interval) loaded
   `--loads` times, each in a fresh browser context (empty cache), and as often again
   reloaded in one context (warm cache): navigation start → `data-ready` on the page, the
   video's `canplay`, and the timeline drawn (two animation frames after `data-ready`,
   so at least one paint with the marks placed); ready = the last of the three.
c. API list: 10 000 sessions (bench_store.py's fill); `GET /api/sessions` for the first
   page, filtered pages and a deep page, `--requests` times each, through the in-process
   app (Starlette's TestClient) and over loopback (`taskerino serve`, one keep-alive
   connection), against `Taskerino.find_sessions` (the call the API makes), plain sqlite3
   replaying the very statements the store sent, and `Taskerino.list_sessions()` (all
   10 000, the library call of the spec).
d. API search: 100 000 items indexed through the store (OCR texts with word boxes,
   transcript lines, notes, in 100 sessions); `GET /api/search?q=` for several kinds of
   query, in-process and over loopback, against `Taskerino.search` directly.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import itertools
import json
import multiprocessing
import os
import platform
import random
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import av
import cv2
import httpx2
import numpy as np
from playwright.sync_api import Browser, Page, sync_playwright
from starlette.testclient import TestClient

import bench_video
from bench_store import Recorder, fill
from taskerino.media import ChunkedEncoder, ChunkInfo
from taskerino.media.chunks import join_chunks
from taskerino.models import (
    ActivityEvent,
    ContextItem,
    OcrText,
    OcrWord,
    Session,
    SessionConfig,
    SessionScreenshot,
    SessionVideo,
    TranscriptLine,
    VideoChapter,
    new_id,
)
from taskerino.recording import video as video_mod
from taskerino.recording.screenshots import encode_image
from taskerino.sessions import Taskerino
from taskerino.store.sqlite import SQLiteStore
from taskerino.virtual import VirtualDisplay
from taskerino.web import create_app
from taskerino.web.security import allowed_hosts, load_token
from workload import WORDS, Workload

RESULTS = Path(__file__).parent / "results"
FPS, WIDTH, HEIGHT = bench_video.FPS, bench_video.WIDTH, bench_video.HEIGHT
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1600, "height": 1000}
DEFAULT_KEYINT = float(
    inspect.signature(ChunkedEncoder.__init__).parameters["keyint_seconds"].default
)
TARGETS = {
    "seek_p95_ms": 100.0,
    "page_ready_ms": 500.0,
    "list_ms": 50.0,
    "search_p95_ms": 50.0,
    "bytes_ratio": 0.5,
}
SEEK_TIMEOUT_MS = 15_000
SETTLE_S = 0.15  # idle time after each seek, the same for clicks and script seeks
PORT = 8741  # the in-process app's nominal port (nothing listens on it)
REPEAT_BYTES = 150  # a video packet smaller than this repeats the frame before (keepalive)


# --- small helpers --------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def spread(values: list[float]) -> dict[str, float]:
    """p50/p95 (and mean, min, max, count) of milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(pct(values, 50), 3),
        "p95": round(pct(values, 95), 3),
        "mean": round(statistics.fmean(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Served:
    """`taskerino serve --port 0 --no-worker` on loopback; stopped by SIGTERM on exit."""

    def __init__(self, home: Path, log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskerino",
                "--home",
                str(home),
                "serve",
                "--port",
                "0",
                "--no-worker",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        if not ready:
            self.stop()
            raise RuntimeError("taskerino serve printed no login URL within 60 s")
        line = self.process.stdout.readline().strip()
        if "?token=" not in line:
            self.stop()
            raise RuntimeError(f"not a login URL: {line!r}")
        self.login = line
        self.base, self.token = line.split("/?token=")
        self.http = httpx2.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def logged_in_page(browser: Browser, served: Served) -> Page:
    """A page in a fresh context (empty cache) with the login cookie set."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(served.login)
    return page


# --- a. the 1-hour session -------------------------------------------------------------------
def workload_pictures(folder: Path, seconds: float, seed: int) -> list[Path]:
    """Checkpoint screenshots of the scripted xterm workload (real screens of text)."""
    with VirtualDisplay() as display:
        manifest = Workload(display.name, seconds, seed, folder).run()
    return [Path(c["image"]) for c in manifest["checkpoints"]]


def encode_hour(
    folder: Path, images: list[Path], minutes: int, keyint: float | None
) -> tuple[list[ChunkInfo], dict[str, Any]]:
    """The stand-in session's chunks, encoded by two processes (minutes split in halves)."""
    workers = max(1, min(2, os.cpu_count() or 1))
    per = [minutes // workers + (1 if i < minutes % workers else 0) for i in range(workers)]
    firsts = [sum(per[:i]) for i in range(workers)]
    jobs = [(folder / f"enc{i}", firsts[i], per[i], images, keyint) for i in range(workers)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(bench_video.encode_minutes, jobs)
    wall = time.perf_counter() - started
    infos = [
        ChunkInfo(Path(c[0]), n, c[2], c[3], c[4], c[5])
        for n, c in enumerate(c for part in parts for c in part["chunks"])
    ]
    return infos, {
        "encode_wall_s": wall,
        "encode_cpu_s": sum(p["encode_s"] for p in parts),
        "changed_frames": sum(p["changed_frames"] for p in parts),
        "keepalives": sum(p["keepalives"] for p in parts),
    }


def ocr_words(rng: random.Random, n: int) -> tuple[str, list[OcrWord]]:
    """A screenful of OCR text with word boxes (8x17 px cells, 118 columns)."""
    words: list[OcrWord] = []
    x = y = 0
    for _ in range(n):
        word = rng.choice(WORDS)
        if x + len(word) > 118:
            x, y = 0, y + 1
        words.append(OcrWord(word, 4 + 8 * x, 4 + 17 * y, 8 * len(word), 15))
        x += len(word) + 1
    return " ".join(w.text for w in words), words


def build_session(
    library: Taskerino,
    folder: Path,
    images: list[Path],
    minutes: int,
    keyint: float | None,
    seed: int,
    notes: int,
) -> dict[str, Any]:
    """Encode, store and join one stand-in session with a full timeline; its facts."""
    label = f"{keyint if keyint is not None else DEFAULT_KEYINT:g}"
    print(f"a. encoding {minutes} min with a {label} s keyframe interval ...", flush=True)
    infos, encoding = encode_hour(folder, images, minutes, keyint)
    store = library._store  # internals: the recorder's own end path is driven directly
    media = library._media
    duration = minutes * 60.0
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(seconds=duration + 120)
    session = Session(
        id=new_id(),
        name=f"One hour, keyframes every {label} s",
        description="bench_web.py stand-in: typing, scrolling, window switches, static",
        start_time=iso(start),
        config=SessionConfig(
            screenshot_interval=120.0,
            video=True,
            sources=["display:1"],
            compositor="passthrough",
        ),
        tags=["bench"],
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
    stored = [video_mod.store_chunk(media, video.id, info) for info in infos]
    chunks = [p for p in stored if p is not None]
    staging = library.layout.staging / session.id / "video"
    started = time.perf_counter()
    finisher = video_mod.finish_video(media, video, chunks, staging, None)
    join_s = time.perf_counter() - started
    assert finisher is not None
    # Screenshots every 2 minutes (drifting a little, as the recorder's timer does).
    pictures = bench_video.screen_pictures(images)
    shot_offsets = [round(k * 120.0 + 0.5 + 0.08 * k, 3) for k in range(int(duration // 120))]
    shots: list[SessionScreenshot] = []
    for k, offset in enumerate(shot_offsets):
        path = staging / f"shot-{k}.webp"
        width, height = encode_image(pictures[int(offset // 60) % len(pictures)], path)

        def add_row(attachment: Any, offset: float = offset) -> None:
            shot = SessionScreenshot(
                new_id(),
                session.id,
                iso(start + timedelta(seconds=offset)),
                offset,
                attachment.id,
                attachment.hash,
            )
            store.add_screenshot(shot)
            shots.append(shot)

        media.ingest(path, "image", f"screenshot-{offset:09.3f}.webp", width=width, height=height,
                     then=add_row)  # fmt: skip
    note_offsets = sorted(round(rng.uniform(1.0, duration - 1.0), 3) for _ in range(notes))
    ocr_rows = []
    for shot in shots:
        text, words = ocr_words(rng, 90)
        ocr_rows.append(OcrText(new_id(), session.id, shot.media_offset, shot.id, text, words))
    for minute in range(minutes):  # a key frame after each window switch
        text, words = ocr_words(rng, 90)
        ocr_rows.append(OcrText(new_id(), session.id, minute * 60.0 + 15.2, None, text, words))
    lines = [
        TranscriptLine(new_id(), session.id, t, t + 5.5, sentence(rng, 12), "mic")
        for minute in range(minutes)
        for t in (minute * 60.0 + 1.0 + 6.0 * k for k in range(5))
    ]
    chapters = [
        VideoChapter(
            new_id(),
            session.id,
            c * 600.0,
            min(duration, (c + 1) * 600.0),
            f"Part {c + 1}: {sentence(rng, 3)}",
            sentence(rng, 12),
            [rng.choice(WORDS) for _ in range(3)],
            None,
            0.8,
        )
        for c in range(max(1, minutes // 10))
    ]
    with store.transaction():
        for offset in note_offsets:
            store.add_context_item(
                ContextItem(
                    new_id(),
                    session.id,
                    iso(start + timedelta(seconds=offset)),
                    offset,
                    "note",
                    f"note at {offset:.0f} s: {sentence(rng, 6)}",
                )
            )
        for minute in range(minutes):
            store.add_activity(
                ActivityEvent(
                    new_id(),
                    session.id,
                    iso(start + timedelta(seconds=minute * 60.0 + 15.0)),
                    minute * 60.0 + 15.0,
                    "xterm",
                    ("log", "editor", "notes")[minute % 3],
                )
            )
        store.replace_ocr(session.id, ocr_rows)
        store.replace_transcript(session.id, lines)
        for stage in ("ocr", "transcribe", "chapters", "index"):
            store.set_stage_status(session.id, stage, "done")
    with store.transaction():
        row = store.session_for_update(session.id)
        finisher(row)
        row.status = "completed"
        row.end_time = iso(start + timedelta(seconds=duration))
        row.total_duration = duration
        store.update_session(row)
    with store.transaction():
        store.replace_chapters(session.id, chapters)
    ended = store.get_session(session.id)
    assert ended.video is not None and ended.video.full_video_attachment_id is not None
    full = media.local_path(store.get_attachment(ended.video.full_video_attachment_id))
    assert full is not None
    shutil.rmtree(staging, ignore_errors=True)
    return {
        "keyint_s": keyint if keyint is not None else DEFAULT_KEYINT,
        "default": keyint is None,
        "session_id": session.id,
        "file": str(full),
        "bytes": full.stat().st_size,
        "chunk_bytes": sum(i.bytes for i in infos),
        "chunk_files": [str(p) for p in chunks],
        "chunks": len(infos),
        "join_s": join_s,
        "minutes": minutes,
        "items": {
            "screenshots": len(shots),
            "notes": len(note_offsets),
            "ocr": len(ocr_rows),
            "transcript": len(lines),
            "activity": minutes,
            "chapters": len(chapters),
        },
        **encoding,
    }


@dataclass
class PacketIndex:
    """The video packets of a file: start (s), size (bytes), keyframe; in file order."""

    pts: list[float] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    key: list[bool] = field(default_factory=list)

    def before(self, t: float) -> tuple[int, int]:
        """(index of the packet shown at `t`, index of the keyframe at or before it)."""
        shown = max(0, int(np.searchsorted(np.array(self.pts), t + 1e-6, side="right")) - 1)
        k = shown
        while k > 0 and not self.key[k]:
            k -= 1
        return shown, k


def packet_index(path: Path) -> PacketIndex:
    index = PacketIndex()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = float(stream.time_base or 1)
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                index.pts.append(packet.pts * tb)
                index.size.append(packet.size)
                index.key.append(bool(packet.is_keyframe))
    return index


def mp4_boxes(path: Path) -> list[tuple[str, int]]:
    """The top-level boxes of an MP4 file: (type, size)."""
    boxes = []
    with path.open("rb") as f:
        end = path.stat().st_size
        at = 0
        while at < end:
            f.seek(at)
            head = f.read(16)
            size, kind = int.from_bytes(head[:4], "big"), head[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:
                size = end - at
            boxes.append((kind, size))
            at += size
    return boxes


def decode_costs(path: Path, index: PacketIndex, offsets: list[float]) -> list[float]:
    """Milliseconds PyAV takes to seek to each offset and decode from the keyframe before
    it to the frame shown there (FFmpeg's H.264 decoder, its default threads)."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        for t in offsets:
            shown, key = index.before(t)
            started = time.perf_counter()
            container.seek(round(index.pts[key] / tb), stream=stream, backward=True)
            wanted = index.pts[shown] - 1e-6
            for frame in container.decode(stream):
                if frame.pts is not None and float(frame.pts * tb) >= wanted:
                    break
            out.append((time.perf_counter() - started) * 1000)
    return out


def reference_bytes(folder: Path, images: list[Path], minutes: int) -> dict[str, Any]:
    """ffmpeg's libx264 veryfast at a constant 15 fps (as x11grab delivers frames) over the
    first `minutes` minutes of the stand-in frames."""
    pictures = bench_video.screen_pictures(images)
    tall = bench_video.tall_strip(pictures)
    out = folder / "ffmpeg.mp4"
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo"]
    cmd += ["-pix_fmt", "yuv420p", "-video_size", f"{WIDTH}x{HEIGHT}", "-framerate", str(FPS)]
    cmd += ["-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    frames = 0
    for minute in range(minutes):
        n = 0
        yuv = b""
        for _, picture in bench_video.standin_minute(minute, pictures, tall):
            yuv = cv2.cvtColor(picture, cv2.COLOR_BGRA2YUV_I420).tobytes()
            proc.stdin.write(yuv)
            n += 1
        for _ in range(60 * FPS - n):  # the static rest: the same frame, 15 times a second
            proc.stdin.write(yuv)
        frames += 60 * FPS
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg failed")
    return {
        "minutes": minutes,
        "frames": frames,
        "bytes": out.stat().st_size,
        "wall_s": time.perf_counter() - started,
    }


# --- a. seeking in Chromium ---------------------------------------------------------------
TARGETS_JS = """() => {
  document.getElementById('timeline').scrollIntoView({ block: 'center' });
  const out = [];
  for (const node of document.querySelectorAll('#rows .kind-note, #rows .kind-shot')) {
    // The first point of the mark, left to right, that no other mark covers.
    const box = node.getBoundingClientRect();
    const y = box.top + box.height / 2;
    for (let x = Math.ceil(box.left) + 1; x < box.right - 1; x += 1) {
      const hit = document.elementFromPoint(x, y);
      if (hit && hit.closest('.item') === node) {
        out.push({ offset: parseFloat(node.dataset.mediaOffset), x, y,
                   kind: node.classList.contains('kind-note') ? 'note' : 'shot' });
        break;
      }
    }
  }
  const track = document.querySelector('#rows .track').getBoundingClientRect();
  return { targets: out, track_px: track.width };
}"""
SETUP_JS = """() => {
  window.__bench = { click: null, next: null };
  window.addEventListener('click', (event) => {
    const item = event.target.closest ? event.target.closest('.item[data-media-offset]') : null;
    window.__bench.click = { at: event.timeStamp, handled: performance.now(),
                             offset: item ? parseFloat(item.dataset.mediaOffset) : null };
  }, true);
  return true;
}"""
ARM_JS = """(timeout) => {
  const video = document.getElementById('player');
  window.__bench.click = null;
  window.__bench.next = new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeout);
    video.addEventListener('seeked', () => {
      clearTimeout(timer);
      resolve({ at: performance.now(), time: video.currentTime, state: video.readyState });
    }, { once: true });
  });
  return true;
}"""
RESULT_JS = """async () => {
  const seeked = await window.__bench.next;
  return { seeked, click: window.__bench.click };
}"""
SCRIPT_SEEK_JS = """async ([t, timeout]) => {
  const video = document.getElementById('player');
  const done = new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeout);
    video.addEventListener('seeked', () => { clearTimeout(timer); resolve(performance.now()); },
                           { once: true });
  });
  const start = performance.now();
  video.currentTime = t;
  const end = await done;
  return end === null ? null : { ms: end - start, time: video.currentTime };
}"""
PLAYABLE_JS = """(timeout) => new Promise((resolve) => {
  const video = document.getElementById('player');
  if (video.readyState >= 3) { resolve(true); return; }
  const timer = setTimeout(() => resolve(false), timeout);
  video.addEventListener('canplay', () => { clearTimeout(timer); resolve(true); }, { once: true });
})"""


def open_session_page(browser: Browser, served: Served, session_id: str) -> Page:
    page = logged_in_page(browser, served)
    page.goto(f"{served.base}/sessions/{session_id}")
    page.locator("#session[data-ready=true]").wait_for(timeout=30_000)
    if not page.evaluate(PLAYABLE_JS, 30_000):
        raise RuntimeError("the video did not become playable within 30 s")
    time.sleep(1.0)  # let the first buffering settle
    return page


def media_counter(page: Page) -> Callable[[], int]:
    """How many media requests the page has made so far."""
    seen = [0]

    def on_request(request: Any) -> None:
        if "/api/media/" in request.url and request.resource_type == "media":
            seen[0] += 1

    page.on("request", on_request)
    return lambda: seen[0]


def click_seeks(
    browser: Browser, served: Served, session_id: str, clicks: int, seed: int
) -> tuple[list[dict[str, Any]], list[float]]:
    """Click timeline items in a random order; (one record per click, offsets clicked)."""
    page = open_session_page(browser, served, session_id)
    try:
        requests = media_counter(page)
        found = page.evaluate(TARGETS_JS)
        targets: list[dict[str, Any]] = found["targets"]
        rng = random.Random(seed)
        notes = [t for t in targets if t["kind"] == "note"]
        shots = [t for t in targets if t["kind"] == "shot"]
        chosen = rng.sample(notes, min(clicks, len(notes))) + shots
        rng.shuffle(chosen)
        page.evaluate(SETUP_JS)
        records = []
        for target in chosen:
            before = requests()
            page.evaluate(ARM_JS, SEEK_TIMEOUT_MS)
            page.mouse.click(target["x"], target["y"])
            result = page.evaluate(RESULT_JS)
            seeked, click = result["seeked"], result["click"]
            if seeked is None or click is None or click["offset"] is None:
                records.append({"kind": target["kind"], "offset": target["offset"], "ms": None})
            else:
                records.append(
                    {
                        "kind": target["kind"],
                        "offset": click["offset"],
                        "ms": seeked["at"] - click["at"],
                        "handler_ms": click["handled"] - click["at"],
                        "landed": seeked["time"],
                        "media_requests": requests() - before,
                    }
                )
            time.sleep(SETTLE_S)
        notes_shown = sum(1 for t in targets if t["kind"] == "note")
        for r in records:
            r["track_px"], r["notes_clickable"] = found["track_px"], notes_shown
        return records, [r["offset"] for r in records]
    finally:
        page.context.close()


def script_seeks(
    browser: Browser, served: Served, session_id: str, offsets: list[float]
) -> list[float | None]:
    """The same offsets seeked by setting currentTime from script, in a fresh page."""
    page = open_session_page(browser, served, session_id)
    try:
        out: list[float | None] = []
        for t in offsets:
            result = page.evaluate(SCRIPT_SEEK_JS, [t, SEEK_TIMEOUT_MS])
            out.append(None if result is None else float(result["ms"]))
            time.sleep(SETTLE_S)
        return out
    finally:
        page.context.close()


def range_costs(served: Served, attachment_url: str, size: int, n: int = 40) -> dict[str, Any]:
    """Milliseconds for 64 KiB Range requests at random places of the file, over loopback."""
    rng = random.Random(1)
    times, statuses = [], Counter[int]()
    for _ in range(n):
        at = rng.randrange(0, max(1, size - 65536))
        started = time.perf_counter()
        response = served.http.get(attachment_url, headers={"Range": f"bytes={at}-{at + 65535}"})
        times.append((time.perf_counter() - started) * 1000)
        statuses[response.status_code] += 1
    return {"ms": spread(times), "statuses": dict(statuses)}


def analyse(
    built: dict[str, Any], records: list[dict[str, Any]], script: list[float | None]
) -> dict[str, Any]:
    """Latency of clicks and script seeks, with what each seek had to fetch and decode."""
    path = Path(built["file"])
    index = packet_index(path)
    offsets = [r["offset"] for r in records]
    decode = decode_costs(path, index, offsets)
    for r, s, d in zip(records, script, decode, strict=True):
        shown, key = index.before(r["offset"])
        r["script_ms"] = s
        r["pyav_decode_ms"] = d
        r["frames_from_keyframe"] = shown - key + 1
        r["seconds_from_keyframe"] = r["offset"] - index.pts[key]
        r["bytes_from_keyframe"] = sum(index.size[key : shown + 1])
        r["repeats_from_keyframe"] = sum(1 for b in index.size[key : shown + 1] if b < REPEAT_BYTES)
    ok = [r for r in records if r["ms"] is not None]
    notes = [r for r in ok if r["kind"] == "note"]
    shots = [r for r in ok if r["kind"] == "shot"]
    frames = np.array([r["frames_from_keyframe"] for r in ok], float)
    ms = np.array([r["ms"] for r in ok], float)
    fit = np.polyfit(frames, ms, 1) if len(ok) > 2 and frames.std() > 0 else [0.0, 0.0]
    corr = float(np.corrcoef(frames, ms)[0, 1]) if len(ok) > 2 and frames.std() > 0 else 0.0
    # latency ≈ a + b × frames decoded + c × (a media request was made)
    design = np.array(
        [[1.0, r["frames_from_keyframe"], 1.0 if r["media_requests"] else 0.0] for r in ok]
    )
    coef = np.linalg.lstsq(design, ms, rcond=None)[0] if len(ok) > 4 else np.zeros(3)
    fetched = [r["ms"] for r in ok if r["media_requests"]]
    buffered = [r["ms"] for r in ok if not r["media_requests"]]
    keys = [t for t, k in zip(index.pts, index.key, strict=True) if k]
    gaps = np.diff(keys) if len(keys) > 1 else np.array([0.0])
    boxes = mp4_boxes(path)
    names = [b[0] for b in boxes]
    return {
        "clicks": len(records),
        "failed": len(records) - len(ok),
        "click_ms_notes": spread([r["ms"] for r in notes]),
        "click_ms_shots": spread([r["ms"] for r in shots]),
        "click_ms_all": spread([r["ms"] for r in ok]),
        "script_ms_notes": spread([r["script_ms"] for r in notes if r["script_ms"] is not None]),
        "script_ms_all": spread([r["script_ms"] for r in ok if r["script_ms"] is not None]),
        "handler_ms": spread([r["handler_ms"] for r in ok]),
        "pyav_decode_ms_notes": spread([r["pyav_decode_ms"] for r in notes]),
        "frames_from_keyframe_notes": spread([float(r["frames_from_keyframe"]) for r in notes]),
        "seconds_from_keyframe_notes": spread([r["seconds_from_keyframe"] for r in notes]),
        "kib_from_keyframe_notes": spread([r["bytes_from_keyframe"] / 1024 for r in notes]),
        "media_requests_per_seek_mean": statistics.fmean(r["media_requests"] for r in ok)
        if ok
        else 0.0,
        "seeks_with_a_media_request": sum(1 for r in ok if r["media_requests"]),
        "landing_error_max_s": max((abs(r["landed"] - r["offset"]) for r in ok), default=0.0),
        "ms_per_frame_fit": {"slope_ms": float(fit[0]), "intercept_ms": float(fit[1])},
        "corr_ms_frames": corr,
        "fit_ms": {
            "intercept": float(coef[0]),
            "per_frame": float(coef[1]),
            "media_request": float(coef[2]),
        },
        "repeated_frames_share_notes": statistics.fmean(
            r["repeats_from_keyframe"] / r["frames_from_keyframe"] for r in notes
        )
        if notes
        else 0.0,
        "click_ms_with_media_request": spread(fetched),
        "click_ms_buffered": spread(buffered),
        "notes_clickable": ok[0]["notes_clickable"] if ok else 0,
        "track_px": ok[0]["track_px"] if ok else 0,
        "file": {
            "bytes": path.stat().st_size,
            "packets": len(index.pts),
            "keyframes": len(keys),
            "keyframe_gap_s": spread(list(map(float, gaps))),
            "top_level_boxes": names,
            "moov_before_mdat": "moov" in names
            and "mdat" in names
            and names.index("moov") < names.index("mdat"),
            "moov_bytes": next((b[1] for b in boxes if b[0] == "moov"), 0),
        },
        "records": records,
    }


def sample_bytes(built: dict[str, Any], minutes: int, folder: Path) -> int:
    """Bytes of the first `minutes` chunks joined into one file (as the recorder joins)."""
    out = folder / f"sample-{built['keyint_s']:g}.mp4"
    join_chunks([Path(p) for p in built["chunk_files"][:minutes]], out)
    size = out.stat().st_size
    out.unlink()
    return size


def part_a(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    if args.synthetic:
        images: list[Path] = []
    else:
        print("a. screens of the scripted workload on Xvfb ...", flush=True)
        images = workload_pictures(folder / "workload", args.workload_seconds, args.seed)
    (folder / "home").mkdir(exist_ok=True)
    library = Taskerino.open(folder / "home", recover=False)
    built: list[dict[str, Any]] = []
    try:
        keyints = sorted({float(k) for k in args.keyints.split(",") if k} | {DEFAULT_KEYINT})
        for k in keyints:
            sub = folder / f"k{k:g}"
            sub.mkdir()
            built.append(
                build_session(
                    library,
                    sub,
                    images,
                    args.minutes,
                    None if k == DEFAULT_KEYINT else k,
                    args.seed,
                    args.notes,
                )
            )
    finally:
        library.close()
    reference_minutes = min(args.reference_minutes, args.minutes)
    print(f"a. ffmpeg reference over {reference_minutes} min ...", flush=True)
    reference = reference_bytes(folder, images, reference_minutes)
    for b in built:
        b["sample_bytes"] = sample_bytes(b, reference_minutes, folder)
        b["sample_ratio"] = b["sample_bytes"] / reference["bytes"]
        b["bytes_per_hour"] = b["bytes"] * 60 / b["minutes"]
    default = next(b for b in built if b["default"])
    with Served(folder / "home", folder / "serve.log") as served, chromium() as browser:
        for b in built:
            print(f"a. seeking with {b['keyint_s']:g} s keyframes ...", flush=True)
            records, offsets = click_seeks(browser, served, b["session_id"], args.clicks, args.seed)
            script = script_seeks(browser, served, b["session_id"], offsets)
            b["seek"] = analyse(b, records, script)
        page = logged_in_page(browser, served)
        data = page.evaluate(
            "async (sid) => (await fetch(`/api/sessions/${sid}`)).json()", default["session_id"]
        )
        page.context.close()
        url = data["media"]["url"]
        ranges = range_costs(served, url, default["bytes"])
    return {
        "workload_pictures": len(images),
        "reference": reference,
        "sessions": built,
        "range_requests": ranges,
        "default_keyint_s": DEFAULT_KEYINT,
    }


# --- b. page ready ----------------------------------------------------------------------------
READY_INIT_JS = """(() => {
  const marks = {};
  let done = null;
  const all = new Promise((resolve) => { done = resolve; });
  const check = () => {
    if (marks.ready !== undefined && marks.canplay !== undefined && marks.drawn !== undefined) {
      done(marks);
    }
  };
  window.__readyMarks = marks;
  window.__readyAll = all;
  const stamp = (name) => (event) => {
    if (event.target && event.target.id === 'player' && marks[name] === undefined) {
      marks[name] = performance.now();
      check();
    }
  };
  document.addEventListener('loadedmetadata', stamp('metadata'), true);
  document.addEventListener('canplay', stamp('canplay'), true);
  new MutationObserver((records, observer) => {
    const root = document.getElementById('session');
    if (root && root.dataset.ready === 'true' && marks.ready === undefined) {
      marks.ready = performance.now();
      marks.items = document.querySelectorAll('#rows .mark').length;
      observer.disconnect();
      requestAnimationFrame(() => requestAnimationFrame(() => {
        marks.drawn = performance.now();
        check();
      }));
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-ready'] });
})();"""
TIMING_JS = """async () => {
  const marks = await Promise.race([
    window.__readyAll, new Promise((resolve) => setTimeout(() => resolve(null), 30000))]);
  const nav = performance.getEntriesByType('navigation')[0];
  const api = performance.getEntriesByType('resource')
    .find((e) => e.name.includes('/api/sessions/'));
  const end = (part) => {
    const e = performance.getEntriesByType('resource').find((r) => r.name.includes(part));
    return e ? e.responseEnd : null;
  };
  return { marks, html_response_end: nav.responseEnd, html_response_start: nav.responseStart,
           html_bytes: nav.decodedBodySize, dom_interactive: nav.domInteractive,
           dom_content_loaded: nav.domContentLoadedEventEnd,
           css_end: end('/static/style.css'), common_js_end: end('/static/common.js'),
           session_js_end: end('/static/session.js'),
           api_start: api ? api.startTime : null, api_end: api ? api.responseEnd : null,
           api_bytes: api ? api.decodedBodySize : null };
}"""


def load_once(page: Page, url: str) -> dict[str, Any]:
    page.goto(url, wait_until="commit")
    timing: dict[str, Any] = page.evaluate(TIMING_JS)
    marks = timing.pop("marks")
    if marks is None:
        raise RuntimeError("the session page did not become ready within 30 s")
    timing.update(marks)
    timing["page_ready"] = max(marks["ready"], marks["canplay"], marks["drawn"])
    return timing


def part_b(folder: Path, args: argparse.Namespace, a: dict[str, Any] | None) -> dict[str, Any]:
    if a is None:
        images: list[Path] = []
        if not args.synthetic:
            print("b. screens of the scripted workload on Xvfb ...", flush=True)
            images = workload_pictures(folder / "workload", args.workload_seconds, args.seed)
        (folder / "home").mkdir(exist_ok=True)
        library = Taskerino.open(folder / "home", recover=False)
        try:
            (folder / "kdefault").mkdir()
            session_id = build_session(
                library, folder / "kdefault", images, args.minutes, None, args.seed, args.notes
            )["session_id"]
        finally:
            library.close()
    else:
        session_id = next(b for b in a["sessions"] if b["default"])["session_id"]
    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    with Served(folder / "home", folder / "serve-b.log") as served, chromium() as browser:
        url = f"{served.base}/sessions/{session_id}"
        print(f"b. loading the session page {args.loads} times cold, {args.loads} warm ...")
        for _ in range(args.loads):
            context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
            context.add_init_script(READY_INIT_JS)
            page = context.new_page()
            page.goto(served.login)
            cold.append(load_once(page, url))
            context.close()
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        context.add_init_script(READY_INIT_JS)
        page = context.new_page()
        page.goto(served.login)
        load_once(page, url)
        for _ in range(args.loads):
            time.sleep(0.5)
            warm.append(load_once(page, url))
        context.close()
        # What the server spends on the two requests that carry the session (HTML, JSON).
        server = time_modes(
            {
                "GET /sessions/ID (HTML)": partial(get_ok, served.http, url, {}),
                "GET /api/sessions/ID (JSON)": partial(
                    get_ok, served.http, f"/api/sessions/{session_id}", {}
                ),
            },
            20,
            warmup=2,
        )

    def summary(loads: list[dict[str, Any]]) -> dict[str, Any]:
        keys = (
            "html_response_end",
            "dom_interactive",
            "css_end",
            "common_js_end",
            "session_js_end",
            "dom_content_loaded",
            "api_start",
            "api_end",
            "ready",
            "metadata",
        )
        out = {
            k: round(statistics.median(x[k] for x in loads if x.get(k) is not None), 1)
            for k in (*keys, "canplay", "drawn", "page_ready")
        }
        out["page_ready_spread"] = spread([x["page_ready"] for x in loads])
        out["timeline_items"] = loads[0].get("items")
        return out

    return {
        "session_id": session_id,
        "cold": summary(cold),
        "warm": summary(warm),
        "html_bytes": cold[0].get("html_bytes"),
        "json_bytes": cold[0].get("api_bytes"),
        "server_ms": {name: spread(t) for name, t in server.items()},
        "loads": {"cold": cold, "warm": warm},
    }


# --- c. API list ----------------------------------------------------------------------------
LIST_CASES: dict[str, dict[str, str]] = {
    "first page": {},
    "filtered: status + tag": {"status": "completed", "tag": "project-3"},
    "filtered: date range": {"from": "2024-06-01", "to": "2024-07-01"},
    "filtered: text": {"q": "session 12"},
    "deep page (offset 9950)": {"offset": "9950"},
}


def library_params(params: dict[str, str]) -> dict[str, Any]:
    names = {"q": "query", "from": "since", "to": "until"}
    return {names.get(k, k): v for k, v in params.items()}


def time_modes(
    modes: dict[str, Callable[[], object]], rounds: int, warmup: int = 5
) -> dict[str, list[float]]:
    """Milliseconds of each call, the modes interleaved round by round (so that a burst of
    load on the machine hits all of them alike)."""
    for _ in range(warmup):
        for call in modes.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, call in modes.items():
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def replay(db: sqlite3.Connection, statements: list[tuple[str, Any]]) -> None:
    for sql, params in statements:
        db.execute(sql, params).fetchall()


def statements_of(library: Taskerino, call: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SQL statements (with parameters) `call` sends through this thread's reader."""
    store = cast(SQLiteStore, library._store)
    call()  # this thread's reader exists from here on
    holder = store._local.reader
    real = holder.db
    recorder = Recorder(real)
    holder.db = recorder
    try:
        call()
    finally:
        holder.db = real
    return recorder.log


def check(response: Any) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return response


def get_ok(client: Any, path: str, params: dict[str, str]) -> Any:
    return check(client.get(path, params=params))


def part_c(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    home = folder / "home"
    home.mkdir()
    print("c. 10 000 sessions ...", flush=True)
    started = time.perf_counter()
    fill(home, 10_000)
    fill_s = time.perf_counter() - started
    library = Taskerino.open(home, recover=False)
    token = load_token(home)
    app = create_app(library, token=token, port=PORT, hosts=allowed_hosts("127.0.0.1", PORT))
    plain = sqlite3.connect(library.layout.database, isolation_level=None)
    cases: dict[str, Any] = {}
    try:
        with (
            TestClient(app, base_url=f"http://127.0.0.1:{PORT}") as client,
            Served(home, folder / "serve-c.log") as served,
        ):
            client.headers["Authorization"] = f"Bearer {token}"
            for name, params in LIST_CASES.items():
                print(f"c. {name} ...", flush=True)
                asked = library_params(params)
                page = library.find_sessions(**asked)
                statements = statements_of(library, partial(library.find_sessions, **asked))
                api = check(client.get("/api/sessions", params=params)).json()
                assert api["total"] == page.total and len(api["sessions"]) == len(page.sessions)
                modes: dict[str, Callable[[], object]] = {
                    "plain sqlite3": partial(replay, plain, statements),
                    "Taskerino.find_sessions": partial(library.find_sessions, **asked),
                    "API in-process": partial(get_ok, client, "/api/sessions", params),
                    "API loopback": partial(get_ok, served.http, "/api/sessions", params),
                }
                times = time_modes(modes, args.requests)
                cases[name] = {
                    "params": params,
                    "total": page.total,
                    "rows": len(page.sessions),
                    "statements": len(statements),
                    "ms": {mode: spread(t) for mode, t in times.items()},
                }
        whole = time_modes({"Taskerino.list_sessions()": library.list_sessions}, 20, warmup=2)
    finally:
        plain.close()
        library.close()
    return {
        "sessions": 10_000,
        "fill_s": fill_s,
        "requests": args.requests,
        "cases": cases,
        "list_sessions_all_ms": spread(whole["Taskerino.list_sessions()"]),
    }


# --- d. API search ----------------------------------------------------------------------------
def vocabulary(rng: random.Random, n: int) -> list[str]:
    """`n` made-up words (a long tail next to the workload's common words)."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words - set(WORDS))


class Corpus:
    """Text drawn from the workload's words (common) and a Zipf tail of made-up words."""

    def __init__(self, seed: int, tail: int = 30_000) -> None:
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.tail = vocabulary(self.rng, tail)
        ranks = np.arange(1, len(self.tail) + 1, dtype=float)
        weights = 1 / ranks**1.05
        self.p = weights / weights.sum()
        self.df: Counter[str] = Counter()
        self.bigrams: Counter[tuple[str, str]] = Counter()

    def words(self, n: int) -> list[str]:
        common = self.np.random(n) < 0.55
        tail = self.np.choice(len(self.tail), size=n, p=self.p)
        out = [
            WORDS[int(self.np.integers(len(WORDS)))] if c else self.tail[int(t)]
            for c, t in zip(common, tail, strict=True)
        ]
        self.df.update(set(out))
        if n <= 20:
            self.bigrams.update(itertools.pairwise(out))
        return out


def fill_search(home: Path, seed: int, sessions: int, ocr: int, lines: int, notes: int) -> Corpus:
    corpus = Corpus(seed)
    library = Taskerino.open(home, recover=False)
    store = library._store
    base = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        for s in range(sessions):
            start = base + timedelta(days=s)
            session = Session(
                id=new_id(),
                name=f"Search session {s}",
                start_time=iso(start),
                status="completed",
                end_time=iso(start + timedelta(hours=1)),
                total_duration=3600.0,
            )
            texts = []
            for k in range(ocr):
                words = corpus.words(120)
                boxes = [
                    OcrWord(w, 4 + 80 * (i % 20), 4 + 17 * (i // 20), 8 * len(w), 15)
                    for i, w in enumerate(words)
                ]
                texts.append(OcrText(new_id(), session.id, k * 12.0, None, " ".join(words), boxes))
            spoken = [
                TranscriptLine(
                    new_id(), session.id, k * 6.0, k * 6.0 + 5.5, " ".join(corpus.words(12))
                )
                for k in range(lines)
            ]
            with store.transaction():
                store.create_session(session)
                store.replace_ocr(session.id, texts)
                store.replace_transcript(session.id, spoken)
                for k in range(notes):
                    store.add_context_item(
                        ContextItem(
                            new_id(),
                            session.id,
                            iso(start + timedelta(seconds=k * 36)),
                            k * 36.0,
                            "note",
                            " ".join(corpus.words(8)),
                        )
                    )
    finally:
        library.close()
    return corpus


def search_queries(corpus: Corpus, items: int, n: int = 20) -> dict[str, list[str]]:
    """Several kinds of query, `n` of each, by how many of the `items` their words are in."""
    rng = random.Random(7)
    by_df = sorted(corpus.df.items(), key=lambda kv: kv[1])

    def band(low: int, high: int) -> list[str]:
        found = [w for w, c in by_df if low <= c <= high and w.isalpha() and len(w) >= 5]
        return rng.sample(found, min(n, len(found)))

    m_low, m_high, c_low = items * 3 // 1000, items * 3 // 100, items // 10
    rare, medium, common = band(3, 30), band(m_low, m_high), band(c_low, 10**9)
    phrases = [f'"{a} {b}"' for (a, b), c in corpus.bigrams.most_common(400)[100 : 100 + n]]
    kinds = {
        "rare word (3-30 items)": rare,
        f"medium word ({m_low}-{m_high} items)": medium,
        f"common word (>{c_low} items)": common,
        "two medium words": [f"{a} {b}" for a, b in zip(medium, reversed(medium), strict=True)],
        "phrase of two words": phrases,
        "prefix* (4 letters)": [w[:4] + "*" for w in medium],
        "medium word in one session": medium,
        "no hit": [f"zzq{k}xw" for k in range(n)],
    }
    return {kind: queries for kind, queries in kinds.items() if queries}


def search_modes(
    library: Taskerino, client: TestClient, served: Served, params: Callable[[int], Any]
) -> dict[str, Callable[[], object]]:
    """The three ways of searching, each going through the queries of one kind in turn."""
    turns = {name: itertools.count() for name in ("library", "in-process", "loopback")}

    def lib() -> object:
        p = params(next(turns["library"]))
        return library.search(p["q"], session_id=p.get("session"))

    def inproc() -> object:
        return check(client.get("/api/search", params=params(next(turns["in-process"]))))

    def loop() -> object:
        return check(served.http.get("/api/search", params=params(next(turns["loopback"]))))

    return {"Taskerino.search": lib, "API in-process": inproc, "API loopback": loop}


def part_d(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    home = folder / "home"
    home.mkdir()
    per = (300, 600, 100)
    sessions = args.search_items // sum(per)
    print(f"d. indexing {sessions * sum(per):,} items in {sessions} sessions ...", flush=True)
    started = time.perf_counter()
    corpus = fill_search(home, args.seed, sessions, *per)
    fill_s = time.perf_counter() - started
    library = Taskerino.open(home, recover=False)
    token = load_token(home)
    app = create_app(library, token=token, port=PORT, hosts=allowed_hosts("127.0.0.1", PORT))
    ids = [s.id for s in library.list_sessions()]
    db = sqlite3.connect(library.layout.database)
    indexed = int(db.execute("SELECT count(*) FROM search_items").fetchone()[0])
    db.close()
    queries = search_queries(corpus, indexed)
    rounds = max(1, args.requests // 2)
    kinds: dict[str, Any] = {}
    try:
        with (
            TestClient(app, base_url=f"http://127.0.0.1:{PORT}") as client,
            Served(home, folder / "serve-d.log") as served,
        ):
            client.headers["Authorization"] = f"Bearer {token}"
            for kind, texts in queries.items():
                print(f"d. {kind} ...", flush=True)
                scoped = kind == "medium word in one session"

                def params(i: int, texts: list[str] = texts, scoped: bool = scoped) -> Any:
                    p = {"q": texts[i % len(texts)]}
                    if scoped:
                        p["session"] = ids[i % len(ids)]
                    return p

                hits = [
                    len(library.search(p["q"], session_id=p.get("session")))
                    for p in (params(i) for i in range(len(texts)))
                ]
                times = time_modes(search_modes(library, client, served, params), rounds)
                kinds[kind] = {
                    "examples": texts[:3],
                    "queries": len(texts),
                    "hits_mean": statistics.fmean(hits) if hits else 0.0,
                    "ms": {mode: spread(t) for mode, t in times.items()},
                }
    finally:
        library.close()
    return {
        "indexed_items": indexed,
        "sessions": sessions,
        "fill_s": fill_s,
        "db_bytes": library.layout.database.stat().st_size,
        "requests_per_kind": rounds,
        "kinds": kinds,
    }


# --- report -----------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def seek_plot(a: dict[str, Any], path: Path) -> None:
    """Cumulative distribution of click → seeked per keyframe interval (cv2, no plot lib)."""
    w, h, left, bottom, top, right = 900, 520, 70, 60, 40, 20
    img = np.full((h, w, 3), 255, np.uint8)
    series = []
    colours = [(200, 80, 30), (40, 140, 40), (30, 30, 200), (150, 60, 150), (20, 150, 200)]
    for b, colour in zip(a["sessions"], colours, strict=False):
        records = b["seek"]["records"]
        values = sorted(r["ms"] for r in records if r["ms"] is not None and r["kind"] == "note")
        series.append((f"click, {b['keyint_s']:g} s keyframes", values, colour, 2))
    default = next(b for b in a["sessions"] if b["default"])
    script = sorted(
        r["script_ms"]
        for r in default["seek"]["records"]
        if r.get("script_ms") is not None and r["kind"] == "note"
    )
    series.append((f"script, {default['keyint_s']:g} s", script, (120, 120, 120), 1))
    top_ms = max(max((max(v) for _, v, _, _ in series if v), default=100.0), 120.0)
    scale_x = (w - left - right) / top_ms

    def x_of(v: float) -> int:
        return int(left + v * scale_x)

    def y_of(q: float) -> int:
        return int(h - bottom - q * (h - bottom - top))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    step = 50 if top_ms <= 500 else 100 if top_ms <= 1200 else 250
    for v in range(0, int(top_ms) + 1, step):
        cv2.line(img, (x_of(v), h - bottom), (x_of(v), h - bottom + 5), (0, 0, 0), 1)
        cv2.putText(img, str(v), (x_of(v) - 12, h - bottom + 22), 0, 0.45, (0, 0, 0), 1)
    for q in (0.0, 0.5, 0.95, 1.0):
        cv2.line(img, (left - 5, y_of(q)), (w - right, y_of(q)), (225, 225, 225), 1)
        cv2.putText(img, f"{q:.2f}", (18, y_of(q) + 5), 0, 0.45, (0, 0, 0), 1)
    target = x_of(TARGETS["seek_p95_ms"])
    cv2.line(img, (target, top), (target, h - bottom), (0, 0, 220), 1)
    cv2.putText(img, "target p95", (target + 4, top + 15), 0, 0.45, (0, 0, 220), 1)
    for k, (label, values, colour, thick) in enumerate(series):
        points = [(x_of(v), y_of((i + 1) / len(values))) for i, v in enumerate(values)]
        if len(points) > 1:
            cv2.polylines(img, [np.array(points, np.int32)], False, colour, thick, cv2.LINE_AA)
        cv2.putText(img, label, (w - right - 260, h - bottom - 20 - 18 * k), 0, 0.45, colour, 1)
    label = "seek latency, ms (click -> seeked), notes at random offsets"
    cv2.putText(img, label, (w // 2 - 250, h - 15), 0, 0.5, (0, 0, 0), 1)
    cv2.putText(img, "share of seeks", (10, 25), 0, 0.5, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    a = results.get("a")
    if a:
        for b in a["sessions"]:
            s = b["seek"]
            tag = f"a. {b['keyint_s']:g} s keyframes{' (default)' if b['default'] else ''}"
            rows.append(
                (
                    f"{tag}: click → seeked, notes at random offsets, p50 / p95 ms",
                    f"{ms(s['click_ms_notes']['p50'])} / {ms(s['click_ms_notes']['p95'])} "
                    f"(n={s['click_ms_notes']['n']})",
                    "p95 ≤ 100 ms",
                    verdict(s["click_ms_notes"]["p95"] <= TARGETS["seek_p95_ms"]),
                )
            )
            rows.append(
                (
                    f"{tag}: script currentTime → seeked, same offsets, p50 / p95 ms",
                    f"{ms(s['script_ms_notes']['p50'])} / {ms(s['script_ms_notes']['p95'])}",
                    "-",
                    "reference",
                )
            )
            rows.append(
                (
                    f"{tag}: bytes per hour; vs ffmpeg veryfast on the same "
                    f"{a['reference']['minutes']} min",
                    f"{b['bytes_per_hour'] / 1e6:.1f} MB; {b['sample_ratio']:.2f}x",
                    "≤ 0.5x",
                    verdict(b["sample_ratio"] <= TARGETS["bytes_ratio"]),
                )
            )
    bb = results.get("b")
    if bb:
        for which in ("cold", "warm"):
            r = bb[which]
            rows.append(
                (
                    f"b. session page ready, {which} cache, median ms (data-ready / canplay / "
                    "drawn)",
                    f"{ms(r['page_ready'])} ({ms(r['ready'])} / {ms(r['canplay'])} / "
                    f"{ms(r['drawn'])})",
                    "≤ 500 ms",
                    verdict(r["page_ready"] <= TARGETS["page_ready_ms"]),
                )
            )
    c = results.get("c")
    if c:
        for name, case in c["cases"].items():
            m = case["ms"]
            i, lo = m["API in-process"], m["API loopback"]
            rows.append(
                (
                    f"c. GET /api/sessions, {name}: in-process; loopback, p50 (p95) ms",
                    f"{ms(i['p50'])} ({ms(i['p95'])}); {ms(lo['p50'])} ({ms(lo['p95'])})",
                    "≤ 50 ms",
                    verdict(max(i["p50"], lo["p50"]) <= TARGETS["list_ms"]),
                )
            )
        whole = c["list_sessions_all_ms"]
        rows.append(
            (
                "c. Taskerino.list_sessions(), all 10 000, p50 (p95) ms",
                f"{ms(whole['p50'])} ({ms(whole['p95'])})",
                "≤ 50 ms",
                verdict(whole["p50"] <= TARGETS["list_ms"]),
            )
        )
    d = results.get("d")
    if d:
        for kind, entry in d["kinds"].items():
            m = entry["ms"]
            i, lo = m["API in-process"], m["API loopback"]
            rows.append(
                (
                    f"d. GET /api/search, {kind}: in-process; loopback, p50 / p95 ms",
                    f"{ms(i['p50'])} / {ms(i['p95'])}; {ms(lo['p50'])} / {ms(lo['p95'])}",
                    "p95 ≤ 50 ms",
                    verdict(max(i["p95"], lo["p95"]) <= TARGETS["search_p95_ms"]),
                )
            )
    return rows


def tradeoff_md(a: dict[str, Any]) -> list[str]:
    ref = a["reference"]
    out = [
        "",
        "## Keyframe interval: seek latency against bytes",
        "",
        f"Same 1-hour stand-in at each setting; bytes vs ffmpeg libx264 veryfast at a constant "
        f"{FPS} fps over the first {ref['minutes']} minutes of the same frames "
        f"({ref['bytes'] / 1e6:.2f} MB). Seeks: clicks on notes at random offsets.",
        "",
        "| keyframes every | keyframes in the hour | MB per hour | × default | vs ffmpeg "
        "| click p50 / p95 ms | script p50 / p95 ms | frames decoded p50 / p95 "
        "| PyAV decode p50 / p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    default = next(b for b in a["sessions"] if b["default"])
    for b in a["sessions"]:
        s = b["seek"]
        f = s["frames_from_keyframe_notes"]
        out.append(
            f"| {b['keyint_s']:g} s ({round(b['keyint_s'] * FPS)} frames)"
            f"{' default' if b['default'] else ''} | {s['file']['keyframes']} "
            f"| {b['bytes_per_hour'] / 1e6:.1f} | {b['bytes'] / default['bytes']:.2f} "
            f"| {b['sample_ratio']:.2f}x "
            f"| {ms(s['click_ms_notes']['p50'])} / {ms(s['click_ms_notes']['p95'])} "
            f"| {ms(s['script_ms_notes']['p50'])} / {ms(s['script_ms_notes']['p95'])} "
            f"| {f['p50']:.0f} / {f['p95']:.0f} "
            f"| {ms(s['pyav_decode_ms_notes']['p50'])} / {ms(s['pyav_decode_ms_notes']['p95'])} |"
        )
    return out


def diagnosis_md(a: dict[str, Any]) -> list[str]:
    out = ["", "## Why seeks take what they take", ""]
    for b in a["sessions"]:
        s = b["seek"]
        f = s["file"]
        fit = s["ms_per_frame_fit"]
        fit = s["fit_ms"]
        wr, bu = s["click_ms_with_media_request"], s["click_ms_buffered"]
        out.append(
            f"- {b['keyint_s']:g} s: {f['keyframes']} keyframes (gap p50 "
            f"{f['keyframe_gap_s'].get('p50', 0):.1f} s, max "
            f"{f['keyframe_gap_s'].get('max', 0):.1f} s); a seek lands p50 "
            f"{s['seconds_from_keyframe_notes']['p50']:.1f} s / "
            f"{s['frames_from_keyframe_notes']['p50']:.0f} frames / "
            f"{s['kib_from_keyframe_notes']['p50']:.0f} KiB after its keyframe. Fit over the "
            f"clicks: {fit['intercept']:.0f} ms + {fit['per_frame']:.2f} ms × frame decoded + "
            f"{fit['media_request']:.0f} ms if a media request was needed (frames alone: r = "
            f"{s['corr_ms_frames']:.2f}; {100 * s['repeated_frames_share_notes']:.0f} % of the "
            f"frames decoded are keepalive repeats). {s['seeks_with_a_media_request']} of "
            f"{s['clicks'] - s['failed']} seeks made a Range request: those p50 / p95 "
            f"{ms(wr.get('p50', 0))} / {ms(wr.get('p95', 0))} ms, the others "
            f"{ms(bu.get('p50', 0))} / {ms(bu.get('p95', 0))} ms. Click handler "
            f"{ms(s['handler_ms']['p50'])} ms; screenshots (0.5-3 s after a chunk's first "
            f"keyframe) p50 / p95 {ms(s['click_ms_shots'].get('p50', 0))} / "
            f"{ms(s['click_ms_shots'].get('p95', 0))} ms; failed {s['failed']}."
        )
    d = next(b for b in a["sessions"] if b["default"])["seek"]["file"]
    out.append(
        f"- The joined file: top-level boxes {' '.join(d['top_level_boxes'])}; moov in front: "
        f"{d['moov_before_mdat']} ({d['moov_bytes'] / 1024:.0f} KiB, read once at load)."
    )
    r = a["range_requests"]
    out.append(
        f"- 64 KiB Range requests over loopback: p50 / p95 {ms(r['ms']['p50'])} / "
        f"{ms(r['ms']['p95'])} ms, statuses {r['statuses']}."
    )
    return out


def page_md(b: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Session page of the hour: milestones, median ms from navigation start",
        "",
        f"{b['cold']['timeline_items']} marks on the timeline. Cold: a fresh browser context "
        "(empty cache) per load; warm: reloads in one context.",
        "",
        "| cache | HTML received | session.js received | DOMContentLoaded | session JSON asked "
        "| session JSON received | data-ready | loadedmetadata | canplay | timeline drawn "
        "| ready (p50 / p95) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for which in ("cold", "warm"):
        r = b[which]
        out.append(
            f"| {which} | {ms(r['html_response_end'])} | {ms(r['session_js_end'])} "
            f"| {ms(r['dom_content_loaded'])} | {ms(r['api_start'])} "
            f"| {ms(r['api_end'])} | {ms(r['ready'])} | {ms(r['metadata'])} "
            f"| {ms(r['canplay'])} | {ms(r['drawn'])} | {ms(r['page_ready_spread']['p50'])} / "
            f"{ms(r['page_ready_spread']['p95'])} |"
        )
    h, j = b["server_ms"]["GET /sessions/ID (HTML)"], b["server_ms"]["GET /api/sessions/ID (JSON)"]
    out += [
        "",
        f"Over loopback, alone: the page's HTML ({(b['html_bytes'] or 0) / 1024:.0f} KiB) "
        f"p50 / p95 {ms(h['p50'])} / {ms(h['p95'])} ms; the session JSON "
        f"({(b['json_bytes'] or 0) / 1024:.0f} KiB) {ms(j['p50'])} / {ms(j['p95'])} ms.",
    ]
    return out


def api_md(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    c = results.get("c")
    if c:
        out += [
            "",
            f"## GET /api/sessions with {c['sessions']:,} sessions: p50 / p95 ms over "
            f"{c['requests']} requests each",
            "",
            "| request | rows (of total) | plain sqlite3, same statements "
            "| Taskerino.find_sessions | API in-process | API loopback |",
            "|---|---|---|---|---|---|",
        ]
        for name, case in c["cases"].items():
            m = case["ms"]
            cells = " | ".join(
                f"{ms(m[k]['p50'])} / {ms(m[k]['p95'])}"
                for k in (
                    "plain sqlite3",
                    "Taskerino.find_sessions",
                    "API in-process",
                    "API loopback",
                )
            )
            out.append(f"| {name} | {case['rows']} ({case['total']}) | {cells} |")
    d = results.get("d")
    if d:
        out += [
            "",
            f"## GET /api/search over {d['indexed_items']:,} indexed items: p50 / p95 ms over "
            f"{d['requests_per_kind']} requests of each kind",
            "",
            "| query | example | hits (mean, ≤ 50) | Taskerino.search | API in-process "
            "| API loopback | web layer, p50 |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, entry in d["kinds"].items():
            m = entry["ms"]
            cells = " | ".join(
                f"{ms(m[k]['p50'])} / {ms(m[k]['p95'])}"
                for k in ("Taskerino.search", "API in-process", "API loopback")
            )
            extra = m["API loopback"]["p50"] - m["Taskerino.search"]["p50"]
            example = entry["examples"][0].replace("|", "\\|")
            out.append(
                f"| {kind} | `{example}` | {entry['hits_mean']:.0f} | {cells} | +{ms(extra)} |"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="abcd")
    parser.add_argument("--minutes", type=int, default=60, help="length of the session (a, b)")
    parser.add_argument("--keyints", default="2,5,10,30", help="keyframe intervals, s (a)")
    parser.add_argument("--clicks", type=int, default=120, help="notes clicked (a)")
    parser.add_argument("--notes", type=int, default=240, help="notes on the timeline (a, b)")
    parser.add_argument("--reference-minutes", type=int, default=10, help="ffmpeg sample (a)")
    parser.add_argument("--workload-seconds", type=float, default=60.0)
    parser.add_argument("--synthetic", action="store_true", help="no Xvfb: drawn screens")
    parser.add_argument("--loads", type=int, default=10, help="page loads (b)")
    parser.add_argument("--requests", type=int, default=200, help="requests per case (c, d)")
    parser.add_argument("--search-items", type=int, default=100_000, help="(d)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="web", help="results file name")
    args = parser.parse_args()
    if shutil.which(CHROMIUM) is None and ("a" in args.parts or "b" in args.parts):
        raise SystemExit(f"{CHROMIUM} is missing (Debian package chromium)")
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="taskerino-bench-web-"))
    try:
        if "a" in args.parts:
            (scratch / "a").mkdir()
            results["a"] = part_a(scratch / "a", args)
        if "b" in args.parts:
            where = scratch / "a" if "a" in results else scratch / "b"
            where.mkdir(exist_ok=True)
            results["b"] = part_b(where, args, results.get("a"))
        if "c" in args.parts:
            (scratch / "c").mkdir()
            results["c"] = part_c(scratch / "c", args)
        if "d" in args.parts:
            (scratch / "d").mkdir()
            results["d"] = part_d(scratch / "d", args)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    rows = table(results)
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"\n{'what':<{width}}  {'measured':<50}{'target':<14}verdict")
    for what, got, target, ok in rows:
        print(f"{what:<{width}}  {got:<50}{target:<14}{ok}")
    payload = {
        "benchmark": "web",
        "command": "python bench/bench_web.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "chromium": subprocess.run(
            [CHROMIUM, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "targets": TARGETS,
        "results": results,
    }
    for built in results.get("a", {}).get("sessions", []):
        for key in ("file", "chunk_files"):  # paths in a deleted scratch folder
            built.pop(key, None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    md = [
        "# Web benchmark (spec §10)",
        "",
        f"`{payload['command']}` — {os.cpu_count()} CPUs (shared: figures are noisy), Python "
        f"{platform.python_version()}, {payload['chromium']}, load average "
        f"{load_before[0]:.2f} before",
        "",
        "| what | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if "b" in results:
        md += page_md(results["b"])
    md += api_md(results)
    if "a" in results:
        md += tradeoff_md(results["a"])
        md += diagnosis_md(results["a"])
        seek_plot(results["a"], RESULTS / f"{args.name}-seek.png")
        md += ["", f"![seek latency]({args.name}-seek.png)"]
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
