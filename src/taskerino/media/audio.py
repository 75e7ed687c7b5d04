"""Audio segments on disk: written crash-safe, salvaged after a kill, joined at the end.

The segment being recorded is raw PCM (`segment-00003.pcm.partial`), appended to as audio
arrives; a segment is closed by encoding it to `segment-00003.flac.tmp`, fsync, rename to
`segment-00003.flac`, then removing the partial. So a `kill -9` leaves complete FLAC files
plus at most one raw partial, which `salvage_segment`/`recover_segments` turn into a segment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf

from ..errors import CaptureError, InvalidInput

log = logging.getLogger(__name__)

RATE = 48_000  # mono
SEGMENT_SUFFIX = ".flac"
PARTIAL_SUFFIX = ".pcm.partial"  # raw s16le mono RATE: the segment being recorded
_SEGMENT_RE = re.compile(r"^segment-(\d{5,})(\.flac|\.pcm\.partial)$")

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True)
class SegmentInfo:
    path: Path
    index: int
    media_offset: float  # seconds on the session timeline, paused time excluded
    duration: float
    frames: int


class SegmentWriter:
    """Cuts the mixed stream into segments: raw partial while open, FLAC once closed."""

    def __init__(
        self, folder: Path, frames_per_segment: int, on_close: Callable[[SegmentInfo], None]
    ) -> None:
        self.folder, self.frames_per_segment, self.on_close = folder, frames_per_segment, on_close
        self.index = 0
        self.total = 0  # frames of all segments, closed and open
        self.current = 0  # frames in the open segment
        self.fd: int | None = None

    def write(self, data: Samples) -> None:
        while len(data):
            if self.fd is None:
                path = self.folder / f"segment-{self.index:05d}{PARTIAL_SUFFIX}"
                self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            part = data[: self.frames_per_segment - self.current]
            os.write(self.fd, part.tobytes())  # unbuffered: a kill loses nothing written
            self.current += len(part)
            self.total += len(part)
            data = data[len(part) :]
            if self.current == self.frames_per_segment:
                self.close()

    def close(self) -> SegmentInfo | None:
        if self.fd is None:
            return None
        os.close(self.fd)
        self.fd = None
        partial = self.folder / f"segment-{self.index:05d}{PARTIAL_SUFFIX}"
        info = salvage_segment(partial, (self.total - self.current) / RATE)
        self.index += 1
        self.current = 0
        if info is not None:
            self.on_close(info)
        return info


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def salvage_segment(path: Path, media_offset: float = 0.0) -> SegmentInfo | None:
    """Turn a raw partial segment (`segment-NNNNN.pcm.partial`) into its FLAC segment.

    Keeps every whole sample written before a crash; an empty partial is removed and gives
    None. `media_offset` is where the segment starts (`recover_segments` works it out).
    """
    path = Path(path)
    match = _SEGMENT_RE.match(path.name)
    if match is None or match.group(2) != PARTIAL_SUFFIX:
        raise CaptureError(f"not a partial audio segment: {path.name}")
    raw = path.read_bytes()
    data = np.frombuffer(raw[: len(raw) - len(raw) % 2], np.int16)
    final = path.with_name(f"segment-{match.group(1)}{SEGMENT_SUFFIX}")
    if not len(data):
        path.unlink()
        return None
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as fh:
        sf.write(fh, data, RATE, format="FLAC", subtype="PCM_16")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    path.unlink()
    return SegmentInfo(final, int(match.group(1)), media_offset, len(data) / RATE, len(data))


def recover_segments(folder: Path) -> list[SegmentInfo]:
    """Every segment a (possibly killed) recording left in `folder`, partial one salvaged.

    Removes leftover temporary files. Media offsets add up the segments' lengths.
    """
    folder = Path(folder)
    for tmp in folder.glob("segment-*.tmp"):
        tmp.unlink()
    found: dict[int, dict[str, Path]] = {}
    for path in folder.iterdir():
        match = _SEGMENT_RE.match(path.name)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = path
    result: list[SegmentInfo] = []
    offset = 0.0
    for index in sorted(found):
        paths = found[index]
        info: SegmentInfo | None = None
        if SEGMENT_SUFFIX in paths:
            if PARTIAL_SUFFIX in paths:  # killed between rename and removing the partial
                paths[PARTIAL_SUFFIX].unlink()
            try:
                frames = sf.info(str(paths[SEGMENT_SUFFIX])).frames
            except (sf.LibsndfileError, RuntimeError) as exc:
                log.warning("audio: unreadable segment %s skipped: %s", paths[SEGMENT_SUFFIX], exc)
                continue
            info = SegmentInfo(paths[SEGMENT_SUFFIX], index, offset, frames / RATE, frames)
        else:
            info = salvage_segment(paths[PARTIAL_SUFFIX], offset)
        if info is not None:
            result.append(info)
            offset += info.duration
    return result


def join_audio(segments: Sequence[Path], out: Path) -> float:
    """Join segments into one playable file and return its duration in seconds.

    The format follows `out`'s suffix: `.m4a` copies the segments' FLAC frames into one MP4
    as they are (nothing decoded, so an hour takes well under a second); `.flac`, `.ogg`/
    `.opus` (Opus, ~7x smaller) and `.wav` decode and encode. Written to a temporary name
    and renamed, so `out` is never partial.
    """
    if not segments:
        raise InvalidInput("no audio segments to join")
    kinds = {
        ".flac": ("FLAC", "PCM_16"),
        ".ogg": ("OGG", "OPUS"),
        ".opus": ("OGG", "OPUS"),
        ".wav": ("WAV", "PCM_16"),
    }
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix != ".m4a" and suffix not in kinds:
        raise InvalidInput(
            f"cannot write audio as {out.suffix!r}; use one of {sorted([*kinds, '.m4a'])}"
        )
    tmp = out.with_name(out.name + ".tmp")
    try:
        if suffix == ".m4a":
            frames = _remux_flac(segments, tmp)
        else:
            frames = _transcode(segments, tmp, *kinds[suffix])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return frames / RATE


def _transcode(segments: Sequence[Path], tmp: Path, fmt: str, subtype: str) -> int:
    frames = 0
    with sf.SoundFile(str(tmp), "w", RATE, 1, subtype, format=fmt) as dst:
        for path in segments:
            with sf.SoundFile(str(path)) as src:
                if src.samplerate != RATE:
                    raise CaptureError(f"{path.name}: {src.samplerate} Hz, expected {RATE} Hz")
                for block in src.blocks(blocksize=RATE * 10, dtype="int16", always_2d=True):
                    dst.write(block[:, :1])
                    frames += len(block)
    return frames


def _remux_flac(segments: Sequence[Path], tmp: Path) -> int:
    joiner = AudioJoiner(tmp)
    try:
        for path in segments:
            joiner.append(path)
        return joiner.close()
    except BaseException:
        joiner.abandon()
        raise


class AudioJoiner:
    """Copies segments' FLAC frames, back to back, into one MP4 audio track at `out`.

    FLAC frames stand alone (no state carries over, no priming), so segments encoded one by
    one concatenate exactly. The MP4's own timestamps place them: the frame numbers inside
    (which restart in every segment) are never used, unlike in a bare .flac file. The MP4
    is fragmented (an empty index in front, one fragment per ~10 s), so a recorder can
    append each segment as it closes and `close` at the end only writes the last fragment;
    memory stays flat however long the recording. A file cut short by a kill is not
    used: recovery joins the segments again.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.frames = 0  # samples appended so far
        self._dst: Any = None
        self._stream: Any = None

    def append(self, segment: Path) -> None:
        try:
            with av.open(str(segment)) as src:
                stream = src.streams.audio[0]
                ctx = stream.codec_context
                if ctx.name != "flac" or ctx.sample_rate != RATE or ctx.channels != 1:
                    raise CaptureError(f"{segment.name}: not a {RATE} Hz mono FLAC segment")
                if self._dst is None:
                    self._dst = av.open(
                        str(self.out),
                        "w",
                        format="mp4",
                        options={
                            "movflags": "+empty_moov+default_base_moof",
                            "frag_duration": "10000000",  # µs
                        },
                    )
                    self._stream = self._dst.add_stream_from_template(stream)
                start, tb = self.frames, stream.time_base or Fraction(1, RATE)
                for packet in src.demux(stream):
                    if packet.pts is None or packet.size == 0:
                        continue
                    at = start + round(packet.pts * tb * RATE)  # in samples
                    end = at + round((packet.duration or 0) * tb * RATE)
                    packet.pts = packet.dts = at
                    packet.time_base = Fraction(1, RATE)
                    packet.stream = self._stream
                    self._dst.mux(packet)
                    self.frames = max(self.frames, end)
        except av.FFmpegError as exc:
            raise CaptureError(f"could not join audio segment {segment.name}: {exc}") from exc

    @property
    def bytes(self) -> int:
        """Bytes written to `out` so far."""
        try:
            return self.out.stat().st_size
        except OSError:
            return 0

    def close(self) -> int:
        """Finish the file; returns the samples it holds (0: nothing appended, no file)."""
        if self._dst is not None:
            try:
                self._dst.close()
            except av.FFmpegError as exc:
                raise CaptureError(f"could not finish {self.out.name}: {exc}") from exc
            finally:
                self._dst = None
        return self.frames

    def abandon(self) -> None:
        """Close and delete what was written."""
        with contextlib.suppress(av.FFmpegError, CaptureError):
            self.close()
        self.out.unlink(missing_ok=True)
