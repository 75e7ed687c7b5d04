"""Video chunk files after the encoder: salvage after a crash, probe, join into one file.

Chunk timestamps are already on the session's media timeline (the encoder writes them
that way), so salvaging and joining are plain remuxes: no frame is re-encoded.
"""

from __future__ import annotations

import heapq
import math
import os
import re
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from taskerino.errors import InvalidInput, StorageError

# moov in front, written once at the end: a browser starts playing at once and can seek.
JOINED_OPTIONS = {"movflags": "+faststart"}
# Chunks read ahead by worker threads while the previous one is written.
JOIN_READ_AHEAD = 3
# Next to a chunk being written: the media time up to which its picture was still.
ALIVE_SUFFIX = ".alive"
# Audio codecs that browsers play from MP4 and PyAV's mp4 muxer stores as they are.
COPY_AUDIO_CODECS = frozenset({"opus", "flac", "aac", "mp3"})


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk file; offsets are seconds on the session's media timeline."""

    path: Path
    index: int
    start_offset: float
    end_offset: float
    frames: int
    bytes: int


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds; `start` is the media offset of its first frame."""

    duration: float
    width: int
    height: int
    frames: int
    codec: str
    bytes: int
    start: float = 0.0
    has_audio: bool = False


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _chunk_index(path: Path) -> int:
    match = re.search(r"(\d+)", path.stem)
    return int(match.group(1)) if match else 0


def _seconds(value: int, time_base: Fraction) -> float:
    return float(value * time_base)


def _good_packets(container: Any, stream: Any, size: int) -> Iterator[Any]:
    """Demux `stream` packet by packet, stopping at the first sign of a damaged tail."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.FFmpegError, OSError):
            return
        if packet.dts is None or packet.size == 0:
            continue  # the demuxer's end-of-stream marker
        if packet.is_corrupt or (packet.pos is not None and packet.pos + packet.size > size):
            return
        yield packet


def _decodes(stream: Any, packets: Sequence[Any]) -> bool:
    """True when the first frame decodes; later packets are only checked by the demuxer."""
    codec = stream.codec_context
    try:
        for packet in packets:
            if codec.decode(packet):
                return True
        return bool(codec.decode(None))
    except (av.FFmpegError, ValueError):
        return False


def salvage_chunk(path: Path) -> ChunkInfo | None:
    """Rewrite a chunk cut short by a kill into a clean file in place.

    Keeps every packet up to the damaged tail, without re-encoding. Returns None when
    nothing is playable (the caller then deletes the file).
    """
    size = path.stat().st_size
    try:
        inp = av.open(str(path))
    except (av.FFmpegError, OSError):
        return None
    with inp:
        if not inp.streams.video:
            return None
        stream = inp.streams.video[0]
        packets = list(_good_packets(inp, stream, size))
        if not packets or not _decodes(stream, packets):
            return None
        tb = packets[0].time_base
        start = _seconds(packets[0].pts, tb)
        last = packets[-1]
        still_until = _still_until(path)
        if still_until is not None and still_until > _seconds(last.pts + (last.duration or 0), tb):
            # The screen was still up to that moment: the last picture lasts until then.
            last.duration = max(1, round(still_until / tb) - last.pts)
        end = _seconds(last.pts + (last.duration or 0), tb)
        tmp = _tmp_path(path)
        try:
            with av.open(str(tmp), "w", format="mp4", options=JOINED_OPTIONS) as out:
                ostream = out.add_stream_from_template(stream)
                for packet in packets:
                    packet.stream = ostream
                    out.mux(packet)
            os.replace(tmp, path)
        except (av.FFmpegError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"could not rewrite chunk {path.name}: {exc}") from exc
    path.with_name(path.name + ALIVE_SUFFIX).unlink(missing_ok=True)
    return ChunkInfo(path, _chunk_index(path), start, end, len(packets), path.stat().st_size)


def _still_until(chunk: Path) -> float | None:
    """The media time the encoder last noted the picture still (its `.alive` file)."""
    try:
        value = float(chunk.with_name(chunk.name + ALIVE_SUFFIX).read_text())
    except (OSError, ValueError):
        return None
    return value if math.isfinite(value) else None


def probe_video(path: Path) -> VideoInfo:
    """Duration, size and frame count of a video file, from its packets (nothing decoded)."""
    size = path.stat().st_size
    try:
        inp = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise StorageError(f"not a readable video file: {path.name}: {exc}") from exc
    with inp:
        if not inp.streams.video:
            raise StorageError(f"no video stream in {path.name}")
        stream = inp.streams.video[0]
        frames, start, end = 0, None, 0
        for packet in _good_packets(inp, stream, size):
            frames += 1
            start = packet.pts if start is None else min(start, packet.pts)
            end = max(end, packet.pts + (packet.duration or 0))
        tb = stream.time_base or Fraction(1, 1)
        first = 0 if start is None else start
        return VideoInfo(
            duration=_seconds(end - first, tb) if frames else 0.0,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            frames=frames,
            codec=stream.codec_context.name,
            bytes=size,
            start=_seconds(first, tb),
            has_audio=bool(inp.streams.audio),
        )


# (dts in seconds, stream: 0 video / 1 audio, end of a video frame in seconds, packet)
_Item = tuple[float, int, float, Any]


def _read_chunk(path: Path) -> tuple[bytes | None, list[Any]]:
    """Extradata and good packets of one chunk (run on a worker thread: PyAV releases the
    GIL while it opens and reads, and opening costs ~20 ms, mostly decoding one frame)."""
    size = path.stat().st_size
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        return stream.codec_context.extradata, list(_good_packets(inp, stream, size))


def _video_packets(
    chunks: Sequence[Path], ostream: Any, extradata: bytes | None
) -> Iterator[_Item]:
    last_dts = -math.inf
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = deque(pool.submit(_read_chunk, p) for p in chunks[:JOIN_READ_AHEAD])
        for i, path in enumerate(chunks):
            chunk_extradata, packets = pending.popleft().result()
            if i + JOIN_READ_AHEAD < len(chunks):
                pending.append(pool.submit(_read_chunk, chunks[i + JOIN_READ_AHEAD]))
            if chunk_extradata != extradata:
                raise InvalidInput(
                    f"chunk {path.name} was encoded with other settings; "
                    "only chunks of one recording can be joined"
                )
            if not packets:
                continue
            tb = float(packets[0].time_base)
            for packet in packets:
                t = packet.dts * tb
                if t <= last_dts:
                    continue  # overlapping chunks: keep the timeline monotonic
                last_dts = t
                packet.stream = ostream
                yield t, 0, (packet.pts + (packet.duration or 0)) * tb, packet


def _audio_packets(audio: Any, ostream: Any, encode: bool) -> Iterator[_Item]:
    stream = audio.streams.audio[0]
    if not encode:
        # An hour of FLAC is ~37 000 packets: one float time base, not a Fraction each.
        tb = float(stream.time_base)
        for packet in audio.demux(stream):
            dts = packet.dts
            if dts is None:
                continue
            packet.stream = ostream
            yield dts * tb, 1, 0.0, packet
        return
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
    for frame in audio.decode(stream):
        for resampled in resampler.resample(frame):
            for packet in ostream.encode(resampled):
                yield _seconds(packet.dts, packet.time_base), 1, 0.0, packet
    for resampled in resampler.resample(None):
        for packet in ostream.encode(resampled):
            yield _seconds(packet.dts, packet.time_base), 1, 0.0, packet
    for packet in ostream.encode(None):
        yield _seconds(packet.dts, packet.time_base), 1, 0.0, packet


def join_chunks(chunks: Sequence[Path], out: Path, audio: Path | None = None) -> VideoInfo:
    """Concatenate chunks (and an audio track starting at media offset 0) into one MP4.

    No video re-encoding; audio is copied when browsers play its codec from MP4 (Opus,
    FLAC, AAC, MP3) and encoded to Opus otherwise (e.g. WAV). The moov box is written in
    front so the file starts playing at once. Written to a temporary file, then renamed.
    """
    if not chunks:
        raise InvalidInput("no chunks to join")
    tmp = _tmp_path(out)
    try:
        with av.open(str(chunks[0])) as head:
            template = head.streams.video[0]
            extradata = template.codec_context.extradata
            width, height = template.codec_context.width, template.codec_context.height
            codec = template.codec_context.name
            has_audio = False
            with av.open(str(tmp), "w", format="mp4", options=JOINED_OPTIONS) as dst:
                vout = dst.add_stream_from_template(template)
                sources = [_video_packets(chunks, vout, extradata)]
                frames, start, end = 0, None, 0.0
                audio_in = av.open(str(audio)) if audio is not None else None
                try:
                    if audio_in is not None and audio_in.streams.audio:
                        astream = audio_in.streams.audio[0]
                        copy = astream.codec_context.name in COPY_AUDIO_CODECS
                        if copy:
                            aout = dst.add_stream_from_template(astream)
                        else:
                            aout = dst.add_stream("libopus", rate=48000)
                            aout.layout = "stereo"
                        sources.append(_audio_packets(audio_in, aout, encode=not copy))
                        has_audio = True
                    for t, index, end_t, packet in heapq.merge(*sources, key=lambda i: i[:2]):
                        if index == 0:
                            frames += 1
                            start = t if start is None else start
                            end = max(end, end_t)
                        dst.mux(packet)
                finally:
                    if audio_in is not None:
                        audio_in.close()
        os.replace(tmp, out)
    except (av.FFmpegError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"could not join {len(chunks)} chunks into {out.name}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    first = start or 0.0
    return VideoInfo(
        duration=end - first if frames else 0.0,
        width=width,
        height=height,
        frames=frames,
        codec=codec,
        bytes=out.stat().st_size,
        start=first,
        has_audio=has_audio,
    )
