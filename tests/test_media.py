"""taskerino.media on real files: compose, encode, salvage after SIGKILL, join with audio."""

from __future__ import annotations

import gc
import itertools
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from taskerino.errors import InvalidInput
from taskerino.frame import NO_CHANGE, Box, Frame
from taskerino.media import (
    ChunkedEncoder,
    ChunkInfo,
    Compositor,
    join_chunks,
    probe_video,
    salvage_chunk,
)

COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255)]  # BGR


def solid(w: int, h: int, bgr: tuple[int, int, int]) -> Frame:
    frame = np.zeros((h, w, 4), np.uint8)
    frame[..., :3] = bgr
    frame[..., 3] = 255
    return frame


def moving(i: int, w: int = 320, h: int = 240) -> Frame:
    """A grey picture with a white bar that moves every frame."""
    frame = np.full((h, w, 4), 60, np.uint8)
    x = (i * 7) % (w - 16)
    frame[:, x : x + 16, :3] = 255
    return frame


def decode_all(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def top_level_boxes(path: Path) -> list[str]:
    boxes = []
    with path.open("rb") as f:
        while header := f.read(8):
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0] - 8
            boxes.append(kind.decode("latin-1"))
            f.seek(size - 8, os.SEEK_CUR)
    return boxes


# ---------------------------------------------------------------- compositor


@pytest.mark.parametrize("kind", ["grid", "side-by-side"])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_each_source_in_its_cell(kind: str, n: int) -> None:
    comp = Compositor(kind, n, 1280, 720)
    sources = [solid(640, 480, COLOURS[i]) for i in range(n)]
    out = comp.compose(sources)
    assert out.shape == (720, 1280, 4) and out.dtype == np.uint8
    cols = n if kind == "side-by-side" else int(np.ceil(np.sqrt(n)))
    assert len(comp.cells) == n
    for i, (x, y, w, h) in enumerate(comp.cells):
        assert abs(w / h - 4 / 3) < 0.02  # aspect kept
        assert w <= 1280 // cols
        assert tuple(out[y + h // 2, x + w // 2, :3]) == COLOURS[i]
        slot_x, slot_y, slot_w, slot_h = comp.slots[i]
        # Letterbox bars are black: the slot's corners lie outside the picture.
        if w < slot_w:
            assert not out[slot_y + slot_h // 2, slot_x, :3].any()
        if h < slot_h:
            assert not out[slot_y, slot_x + slot_w // 2, :3].any()
    covered = np.zeros((720, 1280), bool)
    for x, y, w, h in comp.cells:
        covered[y : y + h, x : x + w] = True
    assert not out[~covered, :3].any()


def test_grid_layout_uses_ceil_sqrt_columns() -> None:
    comp = Compositor("grid", 3, 1920, 1080)
    assert {s[1] for s in comp.slots} == {0, 540}  # two rows
    assert all(s[2] == 960 for s in comp.slots)  # two columns
    side = Compositor("side-by-side", 3, 1920, 1080)
    assert {s[1] for s in side.slots} == {0} and all(s[2] == 640 for s in side.slots)


def test_passthrough_letterboxes_4_3_into_16_9() -> None:
    comp = Compositor("passthrough", 1, 1920, 1080)
    out = comp.compose([solid(1024, 768, (10, 200, 30))])
    x, y, w, h = comp.cells[0]
    assert (x, y, w, h) == (240, 0, 1440, 1080)
    assert tuple(out[540, 960, :3]) == (10, 200, 30)
    assert not out[:, :240].any() and not out[:, 1680:].any()
    same = solid(1920, 1080, (1, 2, 3))
    assert comp.compose([same]) is same  # already the output size: no copy


def test_missing_source_stays_black_and_size_change_recomputes() -> None:
    comp = Compositor("grid", 2, 1280, 720)
    out = comp.compose([solid(640, 360, COLOURS[0]), None])
    x, y, w, h = comp.slots[1]
    assert not out[y : y + h, x : x + w].any()
    comp.compose([solid(640, 360, COLOURS[0]), solid(640, 360, COLOURS[1])])
    wide = comp.cells[1]
    out = comp.compose([solid(640, 360, COLOURS[0]), solid(300, 600, COLOURS[1])])
    assert comp.cells[1] != wide and comp.cells[1][3] == 720  # tall: full slot height
    cx, cy, cw, ch = comp.cells[1]
    assert tuple(out[cy + ch // 2, cx + cw // 2, :3]) == COLOURS[1]


def test_ring_buffers_blank_a_cell_that_shrinks() -> None:
    comp = Compositor("grid", 2, 1280, 720, ring=2)
    for _ in range(2):
        comp.compose([solid(640, 360, COLOURS[0]), solid(640, 360, COLOURS[1])])
    a = comp.compose([solid(640, 360, COLOURS[0]), solid(100, 400, COLOURS[1])])
    b = comp.compose([solid(640, 360, COLOURS[0]), solid(100, 400, COLOURS[1])])
    assert a is not b
    sx, sy, _, _ = comp.slots[1]
    for out in (a, b):
        assert not out[sy + 10, sx + 5, :3].any()  # old wide picture gone


# What a source does between two compositions: gives the same frame object again
# (unchanged), a new frame of the same size (told where it differs: "patch", or not:
# "new"), a new frame of another size, or nothing.
STEP = st.sampled_from(["same", "new", "patch", "patch", "resize", "none"])
SIZES = [(160, 90), (90, 160), (160, 120), (320, 180), (64, 64), (640, 360)]


def noise(rng: np.random.Generator, size: tuple[int, int]) -> Frame:
    return rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)


def patched(rng: np.random.Generator, frame: Frame) -> tuple[Frame, Box]:
    """A copy of `frame` with new pixels in a random box (sometimes empty, sometimes
    reaching past the edges), and that box."""
    h, w = frame.shape[:2]
    x, y = int(rng.integers(-5, w)), int(rng.integers(-5, h))
    box = (x, y, int(rng.integers(0, w // 2 + 8)), int(rng.integers(0, h // 2 + 8)))
    out = frame.copy()
    x0, y0 = max(0, x), max(0, y)
    region = out[y0 : max(y0, y + box[3]), x0 : max(x0, x + box[2])]
    region[...] = rng.integers(0, 256, region.shape, dtype=np.uint8)
    return out, box


def inside(a: Frame, b: Frame, box: Box | None) -> bool:
    """True when every pixel where `a` and `b` differ lies in `box` (None: anywhere)."""
    if box is None:
        return True
    rows, cols = np.nonzero((a != b).any(axis=2))
    x, y, w, h = box
    return bool(((cols >= x) & (cols < x + w) & (rows >= y) & (rows < y + h)).all())


@settings(max_examples=120, deadline=None)
@given(
    layout=st.sampled_from([("grid", 4), ("grid", 3), ("side-by-side", 2), ("passthrough", 1)]),
    ring=st.sampled_from([0, 0, 2, 3]),
    steps=st.lists(st.lists(STEP, min_size=4, max_size=4), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_reused_cells_equal_a_fresh_composition(
    layout: tuple[str, int], ring: int, steps: list[list[str]], seed: int
) -> None:
    kind, n = layout
    rng = np.random.default_rng(seed)
    comp = Compositor(kind, n, 320, 180, ring=ring)
    frames: list[Frame | None] = [noise(rng, SIZES[i]) for i in range(n)]
    # Each output handed out that the caller still holds, with its pixels then.
    held: list[tuple[Frame, Frame]] = []
    previous: Frame | None = None
    for step in steps:
        boxes: list[Box | None] = [None] * n
        for i, what in enumerate(step[:n]):
            now = frames[i]
            if what == "new":
                size = SIZES[i] if now is None else (now.shape[1], now.shape[0])
                frames[i] = noise(rng, size)
            elif what == "patch" and now is not None:
                frames[i], boxes[i] = patched(rng, now)
            elif what == "resize":
                frames[i] = noise(rng, SIZES[int(rng.integers(len(SIZES)))])
            elif what == "none":
                frames[i] = None
        if not ring:  # give some back (an output handed out twice counts twice)
            keep = rng.random(len(held)) < 0.5
            for (old, _), kept in zip(held, keep, strict=True):
                if not kept:
                    comp.release(old)
            held = [h for h, kept in zip(held, keep, strict=True) if kept]
        out = comp.compose(frames, boxes)
        expected = Compositor(kind, n, 320, 180).compose(frames)
        assert np.array_equal(out, expected)
        # The picture's changed box holds every pixel that differs from the last picture.
        if previous is not None:
            assert inside(previous, out, comp.changed_box)
        previous = out.copy()
        if ring:  # the ring's contract: the caller holds the last ring-1 outputs at most
            held = held[-(ring - 1) :]
        # A composed picture never changes while the caller holds it.
        for old, pixels in held:
            assert np.array_equal(old, pixels)
        held.append((out, out.copy()))


def test_a_small_change_redraws_only_its_part_of_the_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    # Four 1080p sources in a 1080p grid: a 40x20 change in one of them is scaled alone
    # (a 20x10 part of its cell, from even edges), and the picture says where it changed.
    rng = np.random.default_rng(1)
    frames: list[Frame | None] = [noise(rng, (1920, 1080)) for _ in range(4)]
    comp = Compositor("grid", 4, 1920, 1080)
    first = comp.compose(frames)
    comp.release(first)
    scaled: list[tuple[int, ...]] = []
    resize = cv2.resize

    def counted(src: Frame, size: tuple[int, int], **kwargs: Any) -> Any:
        scaled.append(src.shape)
        return resize(src, size, **kwargs)

    monkeypatch.setattr(cv2, "resize", counted)
    frame = frames[3]
    assert frame is not None
    box = (101, 51, 40, 20)
    changed = frame.copy()
    changed[51:71, 101:141] = 7
    frames[3] = changed
    out = comp.compose(frames, [NO_CHANGE, NO_CHANGE, NO_CHANGE, box])
    assert out is first  # drawn over, in place
    assert scaled == [(22, 42, 4)]  # rows 50-72, columns 100-142
    assert comp.changed_box == (960 + 50, 540 + 25, 21, 11)
    monkeypatch.undo()
    assert np.array_equal(out, Compositor("grid", 4, 1920, 1080).compose(frames))


def test_an_output_given_back_is_drawn_over_only_then() -> None:
    comp = Compositor("grid", 4, 640, 360)
    frames: list[Frame | None] = [solid(320, 180, c) for c in COLOURS]
    first = comp.compose(frames)
    frames[0] = solid(320, 180, (9, 9, 9))
    second = comp.compose(frames)
    assert second is not first  # `first` was not given back
    comp.release(first)
    frames[1] = solid(320, 180, (8, 8, 8))
    third = comp.compose(frames)
    assert third is first  # reused: only its changed slots redrawn
    assert np.array_equal(third, Compositor("grid", 4, 640, 360).compose(frames))
    assert tuple(second[90, 480, :3]) == COLOURS[1]  # held, untouched
    # Handed out twice (nothing changed), given back once: still held, not reused.
    assert comp.compose(list(frames)) is third
    comp.release(third)
    frames[3] = solid(320, 180, (6, 6, 6))
    fourth = comp.compose(frames)
    assert fourth is not third and tuple(third[270, 480, :3]) == COLOURS[3]


def test_release_of_what_compose_did_not_make_is_ignored() -> None:
    comp = Compositor("passthrough", 1, 320, 180)
    source = solid(320, 180, COLOURS[0])
    assert comp.compose([source]) is source  # passed through as is
    comp.release(source)
    comp.release(solid(320, 180, COLOURS[1]))
    small = solid(160, 90, COLOURS[2])
    out = comp.compose([small])
    assert out is not source and tuple(source[90, 160, :3]) == COLOURS[0]
    assert tuple(out[90, 160, :3]) == COLOURS[2]


def test_an_unchanged_composition_is_the_same_object() -> None:
    comp = Compositor("grid", 4, 640, 360)
    frames: list[Frame | None] = [solid(320, 180, c) for c in COLOURS]
    first = comp.compose(frames)
    assert comp.compose(list(frames)) is first
    frames[2] = solid(320, 180, (7, 7, 7))
    second = comp.compose(frames)
    assert second is not first
    assert tuple(second[270, 160, :3]) == (7, 7, 7)
    assert tuple(second[90, 160, :3]) == COLOURS[0]  # copied from the last output


def test_frames_and_outputs_cannot_change_in_place() -> None:
    # A reused cell is only right while the frame it came from keeps its pixels: a source
    # that changed the array it gave before would otherwise be shown stale.
    comp = Compositor("grid", 2, 640, 180)
    frame = solid(320, 180, COLOURS[0])
    out = comp.compose([frame, None])
    with pytest.raises(ValueError, match="read-only"):
        frame[0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        out[0, 0] = 1
    changed = frame.copy()  # what a source does instead: a new array
    changed[:, :, :3] = COLOURS[1]
    again = comp.compose([changed, None])
    assert tuple(again[90, 160, :3]) == COLOURS[1]


def test_an_array_that_took_a_dropped_outputs_id_is_not_drawn_over() -> None:
    # An output the caller dropped without giving it back is forgotten; a new array that
    # Python puts at the same address (same id) and is then given back is not the compositor's.
    for _ in range(20):
        comp = Compositor("grid", 2, 64, 32)
        dropped = comp.compose([solid(32, 32, COLOURS[0]), None])
        old_id = id(dropped)
        del dropped
        comp.compose([solid(32, 32, COLOURS[1]), None])  # the last output is another now
        gc.collect()
        for _ in range(100):
            foreign = np.full((32, 64, 4), 77, np.uint8)
            if id(foreign) == old_id:
                comp.release(foreign)
                comp.compose([solid(32, 32, COLOURS[2]), None])
                assert int(foreign.min()) == 77 and int(foreign.max()) == 77
                return
    pytest.skip("Python did not reuse the address of a dropped output")


@pytest.mark.parametrize("n", [3, 4])  # 3: part of the picture lies in no slot
@pytest.mark.parametrize("mode", ["fresh", "given back", "ring"])
def test_bars_and_empty_slots_stay_black_in_reused_buffers(n: int, mode: str) -> None:
    comp = Compositor("grid", n, 640, 360, ring=2 if mode == "ring" else 0)

    def compose(frames: list[Frame | None]) -> Frame:
        out = comp.compose(frames)
        if mode == "given back":
            comp.release(out)  # drawn over by the next call
        return out

    whites = [np.full((180, 320, 4), 255, np.uint8) for _ in range(n)]
    for _ in range(3):  # every buffer shows white in every slot
        compose([np.full((180, 320, 4), 255, np.uint8), *whites[1:]])
    tall = solid(90, 180, COLOURS[0])  # half the slot's width: bars left and right
    for _ in range(3):  # unchanged sources beside a letterboxed one and an empty slot
        out = compose([tall, None, *whites[2:]]).copy()
        assert not out[0:180, 0:100].any() and not out[0:180, 220:320].any()
        assert tuple(out[90, 160, :3]) == COLOURS[0]
        assert not out[0:180, 320:640].any()
        covered = np.zeros((360, 640), bool)
        for x, y, w, h in comp.slots[2:]:
            assert int(out[y : y + h, x : x + w].min()) == 255
            covered[y : y + h, x : x + w] = True
        covered[0:180, :] = True
        assert not out[~covered].any()  # outside every slot
        tall = tall.copy()  # a new frame of the same picture


@pytest.mark.parametrize(
    ("kind", "n", "needle"),
    [
        ("mosaic", 1, "use one of passthrough, grid, side-by-side"),
        ("passthrough", 2, "exactly one source"),
        ("grid", 5, "at most 4"),
        ("grid", 0, "at least one source"),
    ],
)
def test_compositor_validation(kind: str, n: int, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        Compositor(kind, n, 1920, 1080)


# ---------------------------------------------------------------- encoder


def test_encode_moving_frames(tmp_path: Path) -> None:
    enc = ChunkedEncoder(tmp_path, 320, 240, 15)
    for i in range(45):
        enc.encode(moving(i), i / 15)
    info = enc.close()
    assert info is not None and info.frames == 45 and enc.frames_encoded == 45
    assert info.path == tmp_path / "chunk-00000.mp4"
    assert enc.bytes_written == info.bytes == info.path.stat().st_size
    frames = decode_all(info.path)
    assert len(frames) == 45
    assert (frames[0].width, frames[0].height, frames[0].format.name) == (320, 240, "yuv420p")
    assert frames[0].key_frame
    with av.open(str(info.path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    probe = probe_video(info.path)
    assert probe.frames == 45 and probe.duration == pytest.approx(3.0, abs=1e-3)
    # Timestamps are the given media times, not a frame counter.
    assert [round(float(f.time), 3) for f in frames[:3]] == [0.0, 0.067, 0.133]
    # The bar is where we drew it.
    grey = frames[10].to_ndarray()[:240]
    x = (10 * 7) % (320 - 16)
    assert grey[120, x + 8] > 200 and grey[120, (x + 100) % 300] < 100


def test_variable_frame_rate_keeps_timeline(tmp_path: Path) -> None:
    enc = ChunkedEncoder(tmp_path, 320, 240, 15)
    enc.encode(moving(0), 0.0)  # then 3 s of identical frames, skipped by the caller
    enc.encode(moving(1), 3.0)
    info = enc.close(end_time=4.0)
    assert info is not None and info.frames == 2
    probe = probe_video(info.path)
    assert probe.duration == pytest.approx(4.0, abs=1e-3)
    frames = decode_all(info.path)
    assert [float(f.time) for f in frames] == pytest.approx([0.0, 3.0])
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            str(info.path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(out.stdout) == pytest.approx(4.0, abs=0.01)


def yuv_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [
        np.frombuffer(memoryview(p), np.uint8).reshape(p.height, p.line_size)[:, : p.width]
        for p in frame.planes
    ]


def test_changed_boxes_encode_the_same_picture_as_whole_conversions(tmp_path: Path) -> None:
    """Only the changed box of each frame is converted to YUV; after any sequence of boxes
    (odd edges, the whole frame, nothing, past the edges) the picture x264 codes is the
    whole frame's conversion. Lossless coding (qp 0) makes that picture the decoded one."""
    w, h = 322, 242  # odd chroma size, padded lines
    rng = np.random.default_rng(7)
    boxes: list[tuple[int, int, int, int] | None] = [
        None,
        (5, 3, 9, 7),
        (0, 0, 1, 1),
        (w - 3, h - 5, 3, 5),
        (100, 50, 150, 121),
        (0, 0, 0, 0),
        None,
        (31, 17, 280, 1),
        (-4, -4, 10, 10),
        (300, 230, 40, 40),
    ]
    boxes += [
        (int(x), int(y), int(rng.integers(1, w - x)), int(rng.integers(1, h - y)))
        for x, y in zip(rng.integers(0, w - 1, 30), rng.integers(0, h - 1, 30), strict=True)
    ]
    frame = rng.integers(0, 256, (h, w, 4), np.uint8)
    expected = []
    enc = ChunkedEncoder(tmp_path, w, h, 15, crf=0, x264_params="qp=0")
    for i, box in enumerate(boxes):
        frame = frame.copy()
        if box is None:
            frame[:] = rng.integers(0, 256, frame.shape, np.uint8)
        else:
            x, y, bw, bh = box
            x0, y0 = max(0, x), max(0, y)
            patch = frame[y0 : y + bh, x0 : x + bw]
            patch[:] = rng.integers(0, 256, patch.shape, np.uint8)
        enc.encode(frame, i / 15, box)
        expected.append(cv2.cvtColor(frame, cv2.COLOR_BGRA2YUV_I420).reshape(-1))
    assert enc.keepalive(len(boxes) / 15 + 0.3)  # the last picture again
    expected.append(expected[-1])
    info = enc.close()
    assert info is not None
    decoded = decode_all(info.path)
    assert len(decoded) == len(expected)
    for i, (got, want) in enumerate(zip(decoded, expected, strict=True)):
        planes = np.concatenate([p.reshape(-1) for p in yuv_planes(got)])
        assert np.array_equal(planes, want), f"frame {i} (box {boxes[min(i, len(boxes) - 1)]})"


def test_keepalive_repeats_last_frame_sparingly(tmp_path: Path) -> None:
    enc = ChunkedEncoder(tmp_path, 320, 240, 15)
    assert not enc.keepalive(0.5)  # nothing to repeat yet
    enc.encode(moving(0), 0.0)
    sent = [enc.keepalive(i / 15) for i in range(1, 31)]  # 2 s of a static screen
    # Every 4th tick (the first at or after 0.25 s) until one at 0.75 s or later has put
    # the change on disk; then none for the rest of the 2 s.
    assert [i for i, s in enumerate(sent, 1) if s] == [4, 8, 12]
    info = enc.close(2.1)
    assert info is not None and info.frames == 4 and enc.frames_repeated == 3
    assert len(decode_all(info.path)) == 4


@pytest.mark.parametrize("tune", ["zerolatency", "none"])
def test_chunk_rollover(tmp_path: Path, tune: str) -> None:
    """One x264 goes from chunk to chunk; with settings that hold frames back (lookahead,
    B-frames: tune none) each chunk is drained into its own file and gets a new one."""
    closed: list[ChunkInfo] = []
    enc = ChunkedEncoder(tmp_path, 320, 240, 15, chunk_seconds=1.0, on_chunk_closed=closed.append)
    if tune == "none":
        del enc.codec_options["tune"]
    for i in range(53):
        enc.encode(moving(i), i / 15)
    last = enc.close(end_time=3.6)
    assert last is not None and closed[-1] == last and closed == enc.chunks
    assert [c.index for c in closed] == [0, 1, 2, 3]
    assert [c.path.name for c in closed] == [f"chunk-0000{i}.mp4" for i in range(4)]
    assert sum(c.frames for c in closed) == 53
    assert closed[0].start_offset == 0.0 and closed[-1].end_offset == pytest.approx(3.6)
    for a, b in itertools.pairwise(closed):
        assert a.end_offset == b.start_offset
    assert enc.bytes_written == sum(c.bytes for c in closed)
    for c in closed:
        with av.open(str(c.path)) as container:
            packets = [p for p in container.demux(video=0) if p.size]
            assert packets[0].is_keyframe
        frames = decode_all(c.path)
        assert len(frames) == c.frames
        if tune == "none":
            continue  # B-frames shift the timestamps by their reorder delay
        assert float(frames[0].time) == pytest.approx(c.start_offset, abs=1e-4)
        probe = probe_video(c.path)
        assert probe.start == pytest.approx(c.start_offset, abs=1e-4)
        assert probe.start + probe.duration == pytest.approx(c.end_offset, abs=1e-4)


def test_encoder_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="even"):
        ChunkedEncoder(tmp_path, 321, 240, 15)
    with pytest.raises(InvalidInput, match="1 to 60"):
        ChunkedEncoder(tmp_path, 320, 240, 0)
    enc = ChunkedEncoder(tmp_path, 320, 240, 15)
    with pytest.raises(InvalidInput, match="BGRA"):
        enc.encode(moving(0, 640, 480), 0.0)
    enc.encode(moving(0), 1.0)
    with pytest.raises(InvalidInput, match="must increase"):
        enc.encode(moving(1), 1.0)
    assert enc.close() is not None
    assert enc.close() is None


def test_follows_compares_in_the_stream_time_base(tmp_path: Path) -> None:
    # Two times a microsecond apart share one 1/90000 s timestamp: the second is not
    # "after" the first, and the recorder must be told so before it sends the frame.
    enc = ChunkedEncoder(tmp_path, 320, 240, 15, keepalive_interval=1.0)
    assert enc.follows(0.0)
    enc.encode(moving(0), 2.043289)
    assert not enc.follows(2.043290)
    with pytest.raises(InvalidInput, match="must increase"):
        enc.encode(moving(1), 2.043290)
    assert enc.follows(2.043289 + 1 / 90000)
    assert not enc.keepalive(2.5)  # too soon
    assert enc.keepalive(3.1)
    assert not enc.follows(3.1)
    enc.close()


# ---------------------------------------------------------------- join


def test_join_is_one_instantly_playable_file(tmp_path: Path) -> None:
    enc = ChunkedEncoder(tmp_path / "chunks", 320, 240, 15, chunk_seconds=1.0)
    for i in range(40):
        enc.encode(moving(i), i / 15)
    enc.encode(moving(40), 4.5)  # VFR gap across a chunk boundary
    enc.close(end_time=5.0)
    chunks = enc.chunks
    out = tmp_path / "full.mp4"
    info = join_chunks([c.path for c in chunks], out)
    assert info.duration == pytest.approx(sum(c.end_offset - c.start_offset for c in chunks))
    assert info.duration == pytest.approx(5.0, abs=1e-3)
    assert info.frames == sum(c.frames for c in chunks) == 41
    assert (info.width, info.height, info.codec, info.has_audio) == (320, 240, "h264", False)
    frames = decode_all(out)
    assert len(frames) == 41 and float(frames[-1].time) == pytest.approx(4.5)
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")
    assert "moof" not in boxes
    assert not list(tmp_path.glob(".*tmp"))
    # ffmpeg's own decoder agrees that it decodes cleanly.
    check = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stderr == ""


def _chunks_for_audio(tmp_path: Path, seconds: float) -> list[Path]:
    enc = ChunkedEncoder(tmp_path / "chunks", 320, 240, 15, chunk_seconds=1.0)
    n = int(seconds * 15)
    for i in range(n):
        enc.encode(moving(i), i / 15)
    enc.close(end_time=seconds)
    return [c.path for c in enc.chunks]


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "codec"),
    [
        ("FLAC", "PCM_16", "flac", "flac"),
        ("OGG", "OPUS", "ogg", "opus"),
        ("WAV", "PCM_16", "wav", "opus"),  # not playable from MP4: encoded to Opus
    ],
)
def test_join_with_audio(tmp_path: Path, fmt: str, subtype: str, suffix: str, codec: str) -> None:
    seconds = 3.0
    rate = 48000
    t = np.arange(int(seconds * rate)) / rate
    sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    audio = tmp_path / f"audio.{suffix}"
    soundfile.write(str(audio), sine, rate, format=fmt, subtype=subtype)
    out = tmp_path / "full.mp4"
    info = join_chunks(_chunks_for_audio(tmp_path, seconds), out, audio=audio)
    assert info.has_audio and info.duration == pytest.approx(seconds, abs=1e-3)
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.name == codec
        samples = 0
        first = None
        for frame in c.decode(stream):
            first = frame.time if first is None else first
            samples += frame.samples
        duration = samples / stream.codec_context.sample_rate
    assert first is not None and abs(first) < 0.03
    assert duration == pytest.approx(seconds, abs=0.03)
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")


# ---------------------------------------------------------------- crash safety

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from taskerino.media import ChunkedEncoder

    enc = ChunkedEncoder(Path(sys.argv[1]), 640, 360, 15)
    start = time.monotonic()
    i = 0
    while True:
        t = i / 15
        delay = start + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = np.full((360, 640, 4), 40, np.uint8)
        frame[:, (i * 9) % 600 : (i * 9) % 600 + 40, :3] = 255
        if 2.0 <= t < 2.5:
            enc.keepalive(t)  # a static moment
        else:
            enc.encode(frame, t)
        print(f"{t:.4f}", flush=True)
        i += 1
    """
)


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path) -> None:
    folder = tmp_path / "chunks"
    written: list[float] = []
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written.append(float(line))
            if written[-1] >= 3.0:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Lines it printed after the one we stopped at: what it had encoded at the kill.
        written += [float(x) for x in proc.stdout.read().split()]
        errors = proc.stderr.read()
    assert written and written[-1] >= 3.0, errors
    path = folder / "chunk-00000.mp4"
    info = salvage_chunk(path)
    assert info is not None
    assert info.start_offset == 0.0
    assert info.end_offset >= written[-1] - 1.0
    assert info.end_offset <= written[-1] + 0.1
    frames = decode_all(path)
    assert len(frames) == info.frames >= 15 * 2
    boxes = top_level_boxes(path)  # rewritten as a clean, non-fragmented file
    assert "moof" not in boxes and boxes.index("moov") < boxes.index("mdat")
    probe = probe_video(path)
    assert probe.frames == info.frames
    assert probe.duration == pytest.approx(info.end_offset - info.start_offset, abs=1e-3)


def test_a_still_screen_repeats_until_the_change_is_on_disk_then_rarely(tmp_path: Path) -> None:
    enc = ChunkedEncoder(tmp_path, 320, 240, 15, keepalive_interval=0.25)
    enc.encode(moving(0), 1.0)
    chunk = tmp_path / "chunk-00000.mp4"
    alive = tmp_path / "chunk-00000.mp4.alive"
    sent = [t for t in (1.25, 1.5, 1.75, 2.0, 2.25, 5.0, 10.0) if enc.keepalive(t)]
    # Three repeats put the change on disk; after that the picture is known still and only
    # its moment is noted, no frame is encoded.
    assert sent == [1.25, 1.5, 1.75]
    assert float(alive.read_text()) == pytest.approx(10.0)
    assert enc.keepalive(11.75)  # the idle repeat (chunk clock) after 10 s
    assert not enc.keepalive(12.0)
    enc.encode(moving(1), 12.5)  # a change: repeats every 0.25 s again until it is on disk
    assert enc.keepalive(12.75)
    info = enc.close(13.0)
    assert info is not None and info.path == chunk and info.end_offset == pytest.approx(13.0)
    assert not alive.exists()
    assert enc.frames_repeated == 5


def test_salvage_stretches_the_last_picture_to_the_moment_it_was_known_still(
    tmp_path: Path,
) -> None:
    enc = ChunkedEncoder(tmp_path / "live", 320, 240, 15, keepalive_interval=0.25)
    for i in range(15):
        enc.encode(moving(i), i / 15)
    for k in range(1, 40):  # ten seconds of a still screen after the last change
        enc.keepalive(14 / 15 + k * 0.25)
    # A kill now: copy what is on disk (the encoder is never closed).
    dead = tmp_path / "dead"
    dead.mkdir()
    for name in ("chunk-00000.mp4", "chunk-00000.mp4.alive"):
        (dead / name).write_bytes((tmp_path / "live" / name).read_bytes())
    info = salvage_chunk(dead / "chunk-00000.mp4")
    assert info is not None
    still = 14 / 15 + 39 * 0.25
    assert info.end_offset == pytest.approx(still, abs=1e-3)
    probe = probe_video(dead / "chunk-00000.mp4")
    assert probe.start + probe.duration == pytest.approx(still, abs=1e-3)
    assert not (dead / "chunk-00000.mp4.alive").exists()
    # Without the note the video ends with the last frame on disk.
    (dead / "again.mp4").write_bytes((tmp_path / "live" / "chunk-00000.mp4").read_bytes())
    bare = salvage_chunk(dead / "again.mp4")
    assert bare is not None and bare.end_offset < 2.0
    enc.close()


def test_salvage_of_nothing_playable(tmp_path: Path) -> None:
    empty = tmp_path / "chunk-00000.mp4"
    empty.write_bytes(b"")
    assert salvage_chunk(empty) is None
    header_only = tmp_path / "chunk-00001.mp4"
    enc = ChunkedEncoder(tmp_path / "x", 320, 240, 15)
    enc.encode(moving(0), 0.0)
    enc.close()
    data = enc.chunks[0].path.read_bytes()
    header_only.write_bytes(data[: data.index(b"moof") - 4])  # ftyp + empty moov only
    assert salvage_chunk(header_only) is None


def test_fresh_output_has_black_bars_even_in_reused_memory() -> None:
    # The output of a full grid is not zeroed first: the bars of a picture that does not
    # fill its slot, and an empty slot, must still come out black although the allocator
    # hands back the memory of the white picture just dropped.
    comp = Compositor("grid", 4, 640, 360)
    white = np.full((180, 320, 4), 255, np.uint8)
    for _ in range(3):
        del_me = comp.compose([white] * 4)
        assert int(del_me.min()) == 255
        del del_me
    tall = solid(90, 180, COLOURS[0])  # half the slot's width: bars left and right
    out = comp.compose([tall, None, white, white])
    assert not out[0:180, 0:100].any() and not out[0:180, 220:320].any()
    assert tuple(out[90, 160, :3]) == COLOURS[0]
    assert not out[0:180, 320:640].any()  # the slot without a picture
    assert int(out[180:360].min()) == 255


def test_outputs_reused_for_an_incomplete_grid_keep_black_outside_the_slots() -> None:
    # Three sources: the last row's one slot is centred, with nothing either side of it.
    # Outputs given back are drawn in again, alternately full and with the slot empty.
    comp = Compositor("grid", 3, 640, 360)
    white = np.full((180, 320, 4), 255, np.uint8)
    seen: list[Frame] = []
    for _ in range(6):
        full = comp.compose([white.copy() for _ in range(3)])
        assert not full[180:360, 0:160].any() and not full[180:360, 480:640].any()
        assert int(full[180:360, 160:480].min()) == 255
        comp.release(full)
        partial = comp.compose([white.copy(), white.copy(), None])
        assert not partial[180:360].any()  # the empty slot and both sides of it
        assert int(partial[0:180].min()) == 255
        comp.release(partial)
        seen += [full, partial]
    assert len({id(f) for f in seen}) < len(seen)  # buffers were drawn in again
