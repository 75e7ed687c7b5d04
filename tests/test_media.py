"""taskerino.media on real files: compose, encode, salvage after SIGKILL, join with audio."""

from __future__ import annotations

import itertools
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from taskerino.errors import InvalidInput
from taskerino.frame import Frame, FramePool
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


def test_chunk_rollover(tmp_path: Path) -> None:
    closed: list[ChunkInfo] = []
    enc = ChunkedEncoder(tmp_path, 320, 240, 15, chunk_seconds=1.0, on_chunk_closed=closed.append)
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


def test_frame_pool_reuses_only_buffers_nobody_holds() -> None:
    pool = FramePool(keep=2)
    a = pool.take(4, 6)
    b = pool.take(4, 6)
    assert a is not b and a.shape == (4, 6, 4) and a.dtype == np.uint8
    held_by_a_view = b[1:3]
    c = pool.take(4, 6)  # both kept buffers are in use: a fresh one, not kept
    assert c is not a and c is not b and len(pool) == 2
    a_id = id(a)
    del a
    d = pool.take(4, 6)
    assert id(d) == a_id  # the one nobody holds any more
    del b
    e = pool.take(4, 6)  # b's buffer is still seen through a view
    assert e is not d and not np.shares_memory(e, held_by_a_view)
    del c, d, e, held_by_a_view
    bigger = pool.take(8, 6)  # a size asked for now replaces those of the old one
    assert bigger.shape == (8, 6, 4) and len(pool) == 1
    with pytest.raises(ValueError):
        FramePool(keep=0)


def test_outputs_reused_for_an_incomplete_grid_keep_black_outside_the_slots() -> None:
    # Three sources: the last row's one slot is centred, with nothing either side of it.
    comp = Compositor("grid", 3, 640, 360)
    white = np.full((180, 320, 4), 255, np.uint8)
    first = comp.compose([white] * 3)
    assert not first[180:360, 0:160].any()
    first[:] = 255  # as if a picture had been there
    del first
    out = comp.compose([white, white, None])
    assert not out[180:360].any()  # the empty slot and both sides of it
    assert int(out[0:180].min()) == 255
