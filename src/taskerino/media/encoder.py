"""H.264 encoding of composed frames into crash-safe chunk files (spec §3 "Video").

Each chunk is a fragmented MP4 flushed to disk every half second, so a `kill -9` loses
at most about the last second; each chunk starts with a keyframe and plays on its own.
Timestamps are the caller's media offsets (variable frame rate: the caller skips frames
identical to the previous one), so chunk k's packets already sit on the session's media
timeline and joining the chunks is a plain remux.

Default settings, measured on 1080p text screens (typing, scrolling), one core:
libx264 `veryfast` + `tune=zerolatency` + `me=umh` + `qcomp=1.0` + `subme=0` +
`weightp=0` + `no-8x8dct`, one thread, CRF 34.
- `qcomp=1.0` (constant quality per frame instead of x264's default 0.6, which gives
  simple frames a lower QP): the repeats that push a change to disk are the same picture
  again, so with 0.6 each one was coded at a finer QP than the change and paid for
  refining it — three repeats after a whole-page change cost 90 % of the change itself.
  With 1.0 a repeat is ~0.1-2 kB. Then CRF 34 instead of 28. Replayed on lossless
  captures of six workloads (bench/results/encoder-settings.md), bytes against CRF 28 /
  qcomp 0.6 (before subme/weightp below): a new page every second 0.60x, typing 0.58x,
  smooth scrolling 0.48x, a video beside text 0.28x, idle 0.52x, bursty 0.58x;
  Tesseract word recall on the decoded
  frames within 0.6 points of the raw screen on every one (CRF 37: -2.7 points on the
  pages). Against ffmpeg x11grab + veryfast: bench/results/workloads.md. Tried without
  gain: deblock -2:-2 or off, trellis 1 (-0.4 % bytes, more CPU), subme 4 + ref 2 (-2 %,
  +45 % CPU), chroma-qp-offset 6, ref 3; aq-strength 1.5 or aq-mode 2 save bytes but lose
  1.6-3.2 recall points on dense text; aq-strength 0.5 costs bytes. Psy-RD does nothing
  at `veryfast`'s subme 2. None of these changes latency: no lookahead, no B-frames.
- `subme=1` + `weightp=0` (instead of veryfast's 2 and 1): x264's CPU 12-30 % lower on
  every workload for 0-6 % more bytes, recall unchanged (same replay; `preset=superfast`
  saves as much CPU but costs 18 % bytes on scrolling, `me=hex` 10 %).
- `subme=0` (whole-pixel motion only) + `no-8x8dct` (4x4 transforms and intra blocks
  only): x264's CPU another 15-17 % lower on scrolling, pages and a video beside text;
  text moves by whole pixels, so bytes +0.5-2 % on text, recall within 0.3 points of
  before; a playing video costs 17 % more bytes (its motion is sub-pixel). Cheaper
  searches cost
  text more: `me=dia` or `me=hex` +25 % bytes on scrolling and pages,
  `partitions=none` +16 % (bench/results/encoder-settings.md, last table).
- `zerolatency` (no B-frames, no lookahead) makes the encoder return each frame's packet
  at once, so nothing waits in encoder buffers when the process is killed, and without
  B-frames the MP4 timestamps stay exact (B-frames shift them by the reorder delay). It
  also cut bytes: lookahead/mbtree rate control did badly on variable-frame-rate input.
- `me=umh` finds scrolled text: 3.6 vs 17 MB/min on a scrolling page, and less CPU.
- One thread: frame threads add delay and cost bytes; slices cost bytes; the machine
  also has to capture and compose.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from taskerino.errors import InvalidInput, StorageError
from taskerino.frame import Box, Frame
from taskerino.media.chunks import ALIVE_SUFFIX, ChunkInfo
from taskerino.rules import check_size, parse_fps

TIME_BASE = Fraction(1, 90000)
DEFAULT_CRF = 34  # see above
# For pictures the compositor shrinks (several monitors in one picture): text already
# near the limit of legibility lost letters at CRF 34 (an xterm at a third of its size
# read "ISIBLEWORD" for "VISIBLEWORD"), so it keeps the finer quantiser of before.
SHRUNK_CRF = 28
# Below this scale a source counts as shrunk.
SHRUNK_BELOW = 0.9
# Fragments are cut every 0.5 s (also between keyframes) and each packet is flushed:
# with keepalive frames every 0.25 s after a change what is on disk lags the encoder by < 1 s.
# A change is on disk once a repeat at least this much later was sent: its packet waits for
# the next one (which gives its duration), and the muxer writes a fragment when a packet
# crosses the fragment's 0.5 s.
FLUSHED_AFTER = 0.75
# On a still screen, once the last change is on disk, a repeat frame only this often (it
# keeps the chunk clock and rollover going; each costs ~5-9 ms of x264 at 1080p); the
# moment is written to the chunk's `.alive` file instead, which salvage stretches the last
# picture to.
IDLE_KEEPALIVE_SECONDS = 10.0
CHUNK_OPTIONS = {
    "movflags": "empty_moov+default_base_moof+frag_discont",
    "frag_duration": "500000",
    "flush_packets": "1",
    # Keep the absolute media offset of the first frame (an edit list) instead of
    # shifting the chunk to start at 0.
    "use_editlist": "1",
}


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}.mp4"


def alive_path(chunk: Path) -> Path:
    """Where a chunk being written notes the last moment its picture was known still."""
    return chunk.with_name(chunk.name + ALIVE_SUFFIX)


def _open_codec(width: int, height: int, fps: int, options: dict[str, str]) -> Any:
    """An x264 encoder, kept from chunk to chunk: each new one left holes of its own in
    the encoding thread's C heap (alone, 1080p in 2-s chunks: +1.4 MB over the first 40
    chunks, then flat; spec §10).

    Without a global header x264 puts its parameter sets in every keyframe: the chunk's
    muxer takes them from its first packet."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = TIME_BASE
    codec.framerate = Fraction(fps)
    codec.options = dict(options)
    codec.open()
    return codec


class _Chunk:
    """One open chunk file; its packets come from the encoder's x264."""

    def __init__(self, path: Path, index: int, start: float, codec: Any, fps: int) -> None:
        self.path = path
        self.index = index
        self.start = start
        self.frames = 0
        self.container: Any = av.open(str(path), "w", format="mp4", options=CHUNK_OPTIONS)
        self.stream = self.container.add_mux_stream(
            "h264", rate=fps, width=codec.width, height=codec.height
        )
        self.stream.time_base = TIME_BASE
        # The newest packet waits for the next one, which gives its exact duration.
        self.pending: Any = None

    def push(self, packet: Any) -> None:
        packet.stream = self.stream
        if self.pending is not None:
            self.pending.duration = packet.pts - self.pending.pts
            self.container.mux(self.pending)
            self.frames += 1
        self.pending = packet

    def close(self, end_pts: int) -> None:
        if self.pending is not None:
            self.pending.duration = max(1, end_pts - self.pending.pts)
            self.container.mux(self.pending)
            self.frames += 1
            self.pending = None
        self.container.close()


class _Picture:
    """One yuv420p picture that frames are converted into, a changed box at a time.

    x264 copies each picture it is given before `encode` returns (no lookahead, no
    frame threads), so the same frame is overwritten and sent again: no 3 MB frame is
    made per picture, and where nothing changed nothing is converted.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        # What OpenCV converts into, for a whole frame or a part: no new buffer a frame
        # (a 3 MB one for each whole 1080p frame was mapped and faulted in every time).
        self._i420 = np.empty(width * height * 3 // 2, np.uint8)
        self.frame: Any = av.VideoFrame(width, height, "yuv420p")
        self.planes = [
            np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)[
                :, : plane.width
            ]
            for plane in self.frame.planes
        ]

    def update(self, frame: Frame, box: Box | None) -> None:
        """Convert the part of `frame` in `box` (None: all of it), widened to even edges
        so that each 2x2 block of chroma is computed from all four of its pixels."""
        if box is None:
            x0, y0, x1, y1 = 0, 0, self.width, self.height
        else:
            x, y, w, h = box
            x0, y0 = max(0, x) & ~1, max(0, y) & ~1
            x1 = min(self.width, (x + w + 1) & ~1)
            y1 = min(self.height, (y + h + 1) & ~1)
            if x1 <= x0 or y1 <= y0:
                return  # nothing changed
        w, h = x1 - x0, y1 - y0
        # OpenCV's BGRA→I420 is ~4x cheaper than PyAV's reformat (same BT.601 limited
        # range); it computes each 2x2 block on its own, so a part converts as the whole.
        yuv = self._i420[: w * h * 3 // 2]
        cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGRA2YUV_I420, dst=yuv.reshape(-1, w))
        y_plane, u_plane, v_plane = self.planes
        y_plane[y0:y1, x0:x1] = yuv[: w * h].reshape(h, w)
        cw, ch = w // 2, h // 2
        u_plane[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = yuv[w * h : w * h + cw * ch].reshape(ch, cw)
        v_plane[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = yuv[w * h + cw * ch :].reshape(ch, cw)


class ChunkedEncoder:
    """Encodes BGRA frames at given media offsets into `chunk-NNNNN.mp4` files in `folder`.

    Not thread-safe: one thread calls `encode`/`keepalive`/`close`. `on_chunk_closed` is
    called on that thread each time a chunk is complete (also for the last one, in `close`).
    While the screen is static the caller skips frames but should call `keepalive` with
    the current media offset (cheap: it re-sends the last frame at most every
    `keepalive_interval` seconds) so that the last picture reaches the disk.
    """

    def __init__(
        self,
        folder: Path,
        width: int,
        height: int,
        fps: int,
        chunk_seconds: float = 60.0,
        on_chunk_closed: Callable[[ChunkInfo], None] | None = None,
        *,
        preset: str = "veryfast",
        crf: int = DEFAULT_CRF,
        keyint_seconds: float = 30.0,
        threads: int = 1,
        x264_params: str = "me=umh:qcomp=1.0:subme=0:weightp=0:no-8x8dct=1",
        keepalive_interval: float = 0.25,
    ) -> None:
        check_size(width, height)
        parse_fps(fps)
        if chunk_seconds <= 0:
            raise InvalidInput(f"chunk_seconds {chunk_seconds}; allowed: above 0")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.width = width
        self.height = height
        self.fps = fps
        self.chunk_seconds = chunk_seconds
        self.on_chunk_closed = on_chunk_closed
        self.keepalive_interval = keepalive_interval
        self.codec_options: dict[str, str] = {
            "preset": preset,
            "tune": "zerolatency",
            "crf": str(crf),
            # Counted in frames; with skipped frames the interval is longer in time,
            # and every chunk starts with a keyframe anyway.
            "g": str(max(1, round(keyint_seconds * fps))),
            "threads": str(threads),
        }
        if x264_params:
            self.codec_options["x264-params"] = x264_params
        self.chunks: list[ChunkInfo] = []
        self.frames_encoded = 0  # frames given to `encode`
        self.frames_repeated = 0  # frames re-sent by `keepalive`
        self._closed_bytes = 0
        self._chunk: _Chunk | None = None
        self._codec: Any = None  # x264, opened with the first chunk
        # Whether x264 has held a frame back (lookahead or B-frames, with other settings
        # than zerolatency): then a chunk's last frames come out only when it is drained,
        # and each chunk gets an x264 of its own.
        self._codec_holds = False
        self._last_pts: int | None = None
        # The picture x264 is given, kept from frame to frame: only the part of a new
        # frame that changed is converted into it (`encode`'s box). Made on first use.
        self._picture: _Picture | None = None
        self._last_change = 0.0  # media time of the last frame given to `encode`
        self._closed = False

    @property
    def bytes_written(self) -> int:
        """Bytes on disk: closed chunks plus the current one."""
        current = 0
        if self._chunk is not None:
            try:
                current = self._chunk.path.stat().st_size
            except OSError:
                current = 0
        return self._closed_bytes + current

    def follows(self, media_time: float) -> bool:
        """True if a frame at `media_time` would come after the last one sent.

        Compared in the stream's time base: two times a few microseconds apart can
        round to the same timestamp, and the muxer refuses a repeated one.
        """
        return self._last_pts is None or round(media_time / TIME_BASE) > self._last_pts

    def next_time(self) -> float:
        """The earliest media time that follows the last frame sent."""
        return 0.0 if self._last_pts is None else float((self._last_pts + 1) * TIME_BASE)

    def encode(self, frame: Frame, media_time: float, box: Box | None = None) -> None:
        """Encode one frame shown from `media_time` (seconds, strictly increasing).

        `box`: where `frame` can differ from the frame given to the call before (None:
        anywhere); only that part is converted to YUV. A wrong box leaves old pixels
        in the video: pass None when unsure.
        """
        if frame.shape != (self.height, self.width, 4):
            raise InvalidInput(
                f"frame of shape {frame.shape}; the encoder takes "
                f"({self.height}, {self.width}, 4) BGRA"
            )
        picture = self._picture
        if picture is None:
            picture = self._picture = _Picture(self.width, self.height)
            box = None
        picture.update(frame, box)
        self._send(picture.frame, media_time)
        self._last_change = media_time
        self.frames_encoded += 1

    def keepalive(self, media_time: float) -> bool:
        """Call while nothing changes (a few times a second); True if a frame was re-sent.

        Until the last change is on disk, the last frame is re-sent every
        `keepalive_interval` (fragments are only written when a later packet arrives).
        After that the screen is known to be still: `media_time` goes to the chunk's
        `.alive` file, and a repeat frame only every `IDLE_KEEPALIVE_SECONDS`.
        """
        if self._picture is None or self._last_pts is None or self._chunk is None:
            return False
        last_sent = float(self._last_pts * TIME_BASE)
        flushing = last_sent < self._last_change + FLUSHED_AFTER
        if not flushing:
            self._mark_alive(self._chunk, media_time)
        interval = self.keepalive_interval if flushing else IDLE_KEEPALIVE_SECONDS
        if media_time - last_sent < interval or not self.follows(media_time):
            return False
        self._send(self._picture.frame, media_time)
        self.frames_repeated += 1
        return True

    @staticmethod
    def _mark_alive(chunk: _Chunk, media_time: float) -> None:
        # A few bytes in the page cache (a kill does not lose them); a failed write only
        # means salvage stretches the last picture less far.
        with contextlib.suppress(OSError):
            alive_path(chunk.path).write_text(f"{media_time:.6f}")

    def _send(self, vframe: Any, media_time: float) -> None:
        if self._closed:
            raise InvalidInput("the encoder is closed")
        pts = round(media_time / TIME_BASE)
        if self._last_pts is not None and pts <= self._last_pts:
            raise InvalidInput(
                f"media time {media_time:.6f} s does not follow "
                f"{float(self._last_pts * TIME_BASE):.6f} s; it must increase"
            )
        try:
            chunk = self._chunk
            if chunk is not None and media_time - chunk.start >= self.chunk_seconds:
                self._close_chunk(pts)
                chunk = None
            # Every chunk starts with a keyframe (an IDR: x264's GOPs are closed).
            vframe.pict_type = PictureType.NONE if chunk is not None else PictureType.I
            if chunk is None:
                chunk = self._open_chunk(media_time)
            vframe.pts = pts
            vframe.time_base = TIME_BASE
            packets = self._codec.encode(vframe)
            if not packets:
                self._codec_holds = True
            for packet in packets:
                chunk.push(packet)
        except (av.FFmpegError, OSError) as exc:
            raise StorageError(f"video encoding failed: {exc}") from exc
        self._last_pts = pts

    def _open_chunk(self, media_time: float) -> _Chunk:
        if self._codec is None:
            self._codec = _open_codec(self.width, self.height, self.fps, self.codec_options)
        index = len(self.chunks)
        self._chunk = _Chunk(
            self.folder / chunk_name(index), index, media_time, self._codec, self.fps
        )
        return self._chunk

    def _close_chunk(self, end_pts: int) -> ChunkInfo:
        chunk = self._chunk
        assert chunk is not None
        self._chunk = None
        if self._closed or self._codec_holds:
            # The frames x264 still holds belong to this chunk.
            for packet in self._codec.encode(None):
                chunk.push(packet)
            self._codec = None
        chunk.close(end_pts)
        alive_path(chunk.path).unlink(missing_ok=True)
        info = ChunkInfo(
            path=chunk.path,
            index=chunk.index,
            start_offset=chunk.start,
            end_offset=float(end_pts * TIME_BASE),
            frames=chunk.frames,
            bytes=chunk.path.stat().st_size,
        )
        self.chunks.append(info)
        self._closed_bytes += info.bytes
        if self.on_chunk_closed is not None:
            self.on_chunk_closed(info)
        return info

    def close(self, end_time: float | None = None) -> ChunkInfo | None:
        """Finish the last chunk; it lasts until `end_time` (default: one frame more).

        Returns its info, or None when no frame was ever encoded. Safe to call twice.
        """
        if self._closed:
            return None
        self._closed = True
        if self._chunk is None or self._last_pts is None:
            return None
        frame_pts = round(1 / self.fps / TIME_BASE)
        end_pts = self._last_pts + frame_pts
        if end_time is not None:
            end_pts = max(self._last_pts + 1, round(end_time / TIME_BASE))
        try:
            return self._close_chunk(end_pts)
        except (av.FFmpegError, OSError) as exc:
            raise StorageError(f"could not finish video chunk: {exc}") from exc
