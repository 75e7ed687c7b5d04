"""OCR on real pictures: xterm text on Xvfb grabbed with mss, and H.264 files made by the
recorder's own encoder from rendered text."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from taskerino.capture.x11 import X11Backend
from taskerino.enrich.ocr import (
    DARK_BELOW,
    OcrEngine,
    OcrResult,
    Word,
    find_tessdata,
    key_frames,
    ocr_image,
    to_gray,
)
from taskerino.errors import EnrichmentError, InvalidInput
from taskerino.media.chunks import join_chunks
from taskerino.media.encoder import ChunkedEncoder
from taskerino.virtual import VirtualDisplay

from .xterm import Terminal, xterm

LINES = [
    "invoice ledger pipeline",
    "quarterly budget review",
    "customer refund request",
    "deploy gateway service",
]


@pytest.fixture(scope="module")
def engine() -> Iterator[OcrEngine]:
    e = OcrEngine()
    yield e
    e.close()


@pytest.fixture(scope="module")
def backend(xdisplay: VirtualDisplay) -> Iterator[X11Backend]:
    b = X11Backend()
    yield b
    b.close()


MARGIN = 24


def grab_settled(backend: X11Backend, term: Terminal) -> np.ndarray:
    """The terminal and a margin around it once its text is drawn (two equal grabs).

    The picture starts MARGIN pixels left of and above the terminal.
    """
    region = {
        "left": term.x - MARGIN,
        "top": term.y - MARGIN,
        "width": term.width + 2 * MARGIN,
        "height": term.height + 2 * MARGIN,
    }
    deadline = time.monotonic() + 15
    last = None
    while time.monotonic() < deadline:
        frame = backend.grab_region(region).copy()
        if last is not None and np.array_equal(frame, last) and to_gray(frame).std() > 20:
            return frame
        last = frame
        time.sleep(0.2)
    raise TimeoutError("the terminal's text was not drawn")


def words_of(result: OcrResult) -> list[str]:
    return [w.text.strip(".,;:").lower() for w in result.words]


def expected_box(term: Terminal, row: int, col: int, length: int) -> tuple[float, ...]:
    """Where the terminal drew `length` characters at (row, col), in the grabbed picture."""
    cw, ch = term.cell
    return (MARGIN + col * cw, MARGIN + row * ch, length * cw, ch)


def overlap(word: Word, box: tuple[float, ...]) -> float:
    """Intersection over union of a word's box and an expected box."""
    x, y, w, h = box
    ix = max(0.0, min(word.x + word.w, x + w) - max(word.x, x))
    iy = max(0.0, min(word.y + word.h, y + h) - max(word.y, y))
    inter = ix * iy
    return inter / (word.w * word.h + w * h - inter)


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_xterm_words_are_read_where_they_are(
    backend: X11Backend, engine: OcrEngine, dark: bool
) -> None:
    with xterm(f"ocr {'dark' if dark else 'light'}", LINES, x=300, y=200, dark=dark) as term:
        frame = grab_settled(backend, term)
    assert (to_gray(frame).mean() < DARK_BELOW) == dark  # the inversion path is the one tested
    result = engine.read(frame)

    found = words_of(result)
    truth = [w for line in LINES for w in line.split()]
    recall = sum(w in found for w in truth) / len(truth)
    assert recall >= 0.9, (recall, result.text)
    assert "invoice ledger pipeline" in result.text.lower()

    # Each word's box covers the cells the terminal drew it in.
    for row, line in enumerate(LINES):
        col = 0
        for token in line.split():
            hits = [w for w in result.words if w.text.lower() == token]
            if hits:
                box = expected_box(term, row, col, len(token))
                best = max(overlap(w, box) for w in hits)
                assert best > 0.4, (token, hits, box)
            col += len(token) + 1
    # Boxes are in the picture's own pixels: every box lies inside the terminal.
    for w in result.words:
        assert MARGIN - 4 <= w.x <= w.x + w.w <= MARGIN + term.width + 4, w
        assert MARGIN - 4 <= w.y <= w.y + w.h <= MARGIN + term.height + 4, w
        assert 0 <= w.conf <= 100


def test_accepts_bgr_bgra_and_gray_alike(backend: X11Backend, engine: OcrEngine) -> None:
    with xterm("ocr formats", LINES[:2], x=100, y=100) as term:
        crop = grab_settled(backend, term)
    results = [
        engine.read(crop),
        engine.read(np.ascontiguousarray(crop[:, :, :3])),
        engine.read(to_gray(crop)),
    ]
    assert results[0].words  # something was read
    assert results[0] == results[1] == results[2]
    # Module-level helper: the same reading.
    assert ocr_image(crop) == results[0]


def test_engine_per_thread(backend: X11Backend) -> None:
    with xterm("ocr threads", LINES, x=100, y=100) as term:
        picture = grab_settled(backend, term)
    engine = OcrEngine()
    try:
        alone = engine.read(picture)
        results: list[OcrResult] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                results.extend(engine.read(picture) for _ in range(2))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(results) == 4 and all(r == alone for r in results)
    finally:
        engine.close()
    with pytest.raises(EnrichmentError, match="closed"):
        engine.read(picture)


def test_blank_and_bad_images() -> None:
    engine = OcrEngine()
    try:
        assert engine.read(np.full((200, 300), 255, np.uint8)).words == ()
        assert engine.read(np.zeros((0, 0), np.uint8)) == OcrResult("", ())
        with pytest.raises(InvalidInput, match="uint8"):
            engine.read(np.zeros((10, 10), np.float32))
        with pytest.raises(InvalidInput, match="shape"):
            engine.read(np.zeros((10, 10, 2), np.uint8))
    finally:
        engine.close()


def test_language_data_is_found_or_the_error_says_what_to_install() -> None:
    assert Path(find_tessdata("eng"), "eng.traineddata").is_file()
    with pytest.raises(EnrichmentError, match="tesseract-ocr"):
        find_tessdata("zzz")
    with pytest.raises(InvalidInput, match="allowed"):
        find_tessdata("../eng")


# --- key frames of a recorded video -------------------------------------------------------

SIZE = (1280, 720)
FPS = 15
APPENDED = "kernel module parser vendor widget planner refund summary archive"
PAGES = {
    "a": ["alpha invoice ledger", "budget review meeting"],
    "b": [f"appended line {word}" for word in APPENDED.split(" ")],
    "c": ["camera channel checkout", "cluster commit config"],
    "d": ["dashboard database delta", "deploy device digest"],
}


def render(lines: list[str], *, top: int = 60, marker: int | None = None) -> np.ndarray:
    """A BGRA picture of `lines` in DejaVu Sans Mono, black on white; `marker` moves a bar."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype("DejaVuSansMono.ttf", 30)
    for i, line in enumerate(lines):
        draw.text((60, top + i * 44), line, fill="black", font=font)
    if marker is not None:  # a bar that grows: a picture that keeps changing
        draw.rectangle((60, 480, 60 + marker * 4, 680), fill="black")
    rgb = np.asarray(image)
    return np.ascontiguousarray(np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 255, np.uint8)]))


def timeline() -> Iterator[tuple[float, np.ndarray | None]]:
    """(media time, picture or None for "unchanged") at 15 fps, like the recorder's loop.

    0-5 s page a; 5-8 s page b, a line added every 5 frames; 8-13 s page b settled;
    13-18 s page c; 18-30 s page d with a bar that grows every frame.
    """
    b_lines = PAGES["b"]
    for n in range(30 * FPS):
        t = n / FPS
        if n == 0:
            yield t, render(PAGES["a"])
        elif 5 * FPS <= n < 8 * FPS:
            shift = (n - 5 * FPS) // 5  # 0..8
            yield t, render(b_lines[: shift + 1])
        elif n == 13 * FPS:
            yield t, render(PAGES["c"])
        elif n >= 18 * FPS:
            yield t, render(PAGES["d"], marker=n - 18 * FPS)
        else:
            yield t, None


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s made like a recording: the recorder's encoder (keyframes 30 s of frames apart,
    unchanged frames skipped, keepalives), its chunks joined into one file."""
    folder = tmp_path_factory.mktemp("video")
    encoder = ChunkedEncoder(folder / "chunks", *SIZE, FPS, chunk_seconds=20)
    for t, picture in timeline():
        if picture is None:
            encoder.keepalive(t)
        else:
            encoder.encode(picture, t)
    encoder.close(30.0)
    out = folder / "video.mp4"
    join_chunks([c.path for c in encoder.chunks], out)
    return out


def test_keyframes_alone_would_miss_text(video: Path) -> None:
    """Why key_frames decodes every frame: the recorder's keyframes are far apart."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        keys = [
            float(p.pts * stream.time_base)
            for p in container.demux(stream)
            if p.is_keyframe and p.pts is not None
        ]
    # One per chunk (chunks of 20 s): pages b and c appear between keyframes.
    assert keys == [0.0, pytest.approx(20.0, abs=0.1)]


def test_key_frames_find_every_page_when_it_settles(video: Path, engine: OcrEngine) -> None:
    samples: list[tuple[float, float]] = []
    frames = list(
        key_frames(
            video,
            min_change=0.01,
            max_gap=4.0,
            on_sample=lambda t, c: samples.append((t, c)),
        )
    )
    offsets = [t for t, _ in frames]
    assert offsets == sorted(offsets)
    texts = {t: engine.read(image).text.lower() for t, image in frames}

    def read_near(when: float, tolerance: float = 1.05) -> str:
        near = [text for t, text in texts.items() if abs(t - when) <= tolerance]
        assert near, (when, offsets)
        return near[0]

    assert "alpha invoice ledger" in read_near(0.0)
    # Page b is read once it stopped scrolling, with all its lines; not while it moved.
    page_b = read_near(8.0)
    assert all(line in page_b for line in PAGES["b"]), page_b
    assert not [t for t in offsets if 5.0 <= t < 7.5], offsets
    assert "camera channel checkout" in read_near(13.0, tolerance=0.1)
    # Page d keeps changing: read about every max_gap seconds, not every second.
    during_d = [t for t in offsets if t >= 18.0]
    assert 2 <= len(during_d) <= 5, offsets
    assert all("dashboard database delta" in texts[t] for t in during_d)
    assert len(frames) <= 9

    # Every second was looked at, and the change signal shows what moved.
    assert len(samples) >= 29
    change = dict(samples)
    assert max(c for t, c in samples if 5.5 < t < 8.0) > 0.01  # scrolling
    assert all(c == 0 for t, c in samples if 9.5 < t < 12.5)  # settled page b
    assert all(c > 0 for t, c in samples if 19.5 < t < 29.5)  # growing bar
    assert change[0.0] == 1.0


def test_key_frames_min_change_and_bad_input(video: Path, tmp_path: Path) -> None:
    # Nothing counts as changed enough: only the first and the last picture.
    only = [t for t, _ in key_frames(video, min_change=1.0, max_gap=100)]
    assert only[0] == 0.0 and len(only) <= 2
    with pytest.raises(InvalidInput):
        list(key_frames(video, min_change=0))
    with pytest.raises(InvalidInput):
        list(key_frames(video, max_gap=0))
    with pytest.raises(InvalidInput):
        list(key_frames(video, interval=-1))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(EnrichmentError, match=r"junk\.mp4"):
        list(key_frames(junk))


def test_key_frames_of_a_cut_file_stop_at_the_damage(video: Path, tmp_path: Path) -> None:
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    whole = [t for t, _ in key_frames(video)]
    partial = [t for t, _ in key_frames(cut)]
    assert partial and partial[0] == 0.0
    assert len(partial) <= len(whole)


def test_openmp_limit_is_not_left_behind(engine: OcrEngine) -> None:
    """OMP_THREAD_LIMIT=1 is for Tesseract's loading only (see ocr._tesserocr)."""
    engine.read(np.full((50, 50), 255, np.uint8))
    assert "OMP_THREAD_LIMIT" not in os.environ or os.environ["OMP_THREAD_LIMIT"] != "1"
