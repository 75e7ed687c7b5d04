"""Build a long session in a store from a short one that was recorded for real (for
bench/bench_enrich.py).

A recorded piece of L seconds is laid end to end until the session is `seconds` long:

- video: each chunk of the piece is remuxed (no re-encoding) with its timestamps moved on
  by the cycle's start (the last cycle cut where the session ends) and stored as a chunk
  with its row (`recording.video.store_chunk`); the chunks are joined into the playable
  file with the audio muxed in (`finish_video`), as the recorder does at the end;
- audio: the piece's 10 s segments at their offsets in each cycle (the same bytes, so one
  blob), the last one cut at the end (`store_segment`), joined into the session's audio
  file (`join_and_attach`);
- screenshots: one every `screenshot_interval` seconds, as a recorder with that interval
  takes them: the piece's screenshot (it was recorded with a short interval) nearest the
  moment, at the offset it really had in its cycle;
- activity: the piece's focus changes in every cycle;
- notes: a note at each cycle's start.

The session is created `active` and then ended in one transaction that attaches the media
and queues its enrichment (`queue_enrichment`), as `Lifecycle` does. Everything goes
through the store, `MediaLibrary` and the recorders' own store functions: a session the
real stages accept, `doctor` clean.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import soundfile as sf

from taskerino.config import resolve_home
from taskerino.media import ChunkInfo
from taskerino.media.audio import RATE, SegmentInfo
from taskerino.media.encoder import CHUNK_OPTIONS
from taskerino.models import (
    ActivityEvent,
    ContextItem,
    Session,
    SessionConfig,
    SessionScreenshot,
    SessionVideo,
    new_id,
    on_timeline,
    parse_time,
    utc_iso,
)
from taskerino.recording.audio import join_and_attach, store_segment
from taskerino.recording.video import finish_video, store_chunk
from taskerino.sessions import Taskerino
from taskerino.sessions.lifecycle import queue_enrichment
from taskerino.store.media import MediaLibrary
from taskerino.store.registry import open_blob_store, open_store


@dataclass
class Piece:
    """What the recorded piece holds, with local file paths (read through the front door)."""

    duration: float
    config: SessionConfig
    video: SessionVideo
    chunks: list[tuple[float, float, Path]]  # (start, end, file), in order
    segments: list[tuple[float, float, Path]]  # (offset, duration, file), in order
    screenshots: list[tuple[float, Path, int, int]]  # (offset, file, width, height)
    activity: list[tuple[float, str, str]]  # (offset, app, title)
    start_wall: float


@dataclass
class Assembled:
    session_id: str
    seconds: float
    cycles: float
    chunks: int
    segments: int
    screenshots: int
    distinct_screenshots: int
    activity: int
    notes: int
    shift: list[float] = field(default_factory=list)  # start of each cycle


def read_piece(home: Path, session_id: str) -> Piece:
    with Taskerino.open(home, recover=False) as library:
        session = library.get(session_id)
        if session.video is None or session.total_duration is None:
            raise RuntimeError(f"session {session_id} has no video")

        def path(attachment_id: str) -> Path:
            found = library.attachment_path(library.attachment(attachment_id))
            if found is None:
                raise RuntimeError(f"attachment {attachment_id} is not on this disk")
            return found

        shots = []
        for shot in session.screenshots:
            attachment = library.attachment(shot.attachment_id)
            shots.append(
                (
                    shot.media_offset,
                    path(shot.attachment_id),
                    attachment.width or 0,
                    attachment.height or 0,
                )
            )
        return Piece(
            duration=session.total_duration,
            config=session.config,
            video=session.video,
            chunks=[
                (c.start_offset, c.end_offset, path(c.attachment_id))
                for c in sorted(session.video.chunks, key=lambda c: c.index)
            ],
            segments=[
                (s.media_offset, s.duration, path(s.attachment_id))
                for s in sorted(session.audio_segments, key=lambda s: s.media_offset)
            ],
            screenshots=sorted(shots, key=lambda s: s[0]),
            activity=[(a.media_offset, a.app, a.title) for a in session.activity],
            start_wall=parse_time(session.start_time).timestamp(),
        )


def shift_chunk(src: Path, dst: Path, shift: float, end: float) -> ChunkInfo | None:
    """`src` with every timestamp `shift` seconds later, packets from `end` on left out;
    None when nothing is left."""
    frames, first, last = 0, math.inf, 0.0
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        moved = round(shift / tb)
        with av.open(str(dst), "w", format="mp4", options=CHUNK_OPTIONS) as out:
            ostream = out.add_stream_from_template(stream)
            for packet in inp.demux(stream):
                if packet.dts is None or packet.pts is None or packet.size == 0:
                    continue
                start = float((packet.pts + moved) * tb)
                if start >= end:
                    break
                packet.pts += moved
                packet.dts += moved
                packet.stream = ostream
                out.mux(packet)
                frames += 1
                first = min(first, start)
                last = max(last, start + float((packet.duration or 0) * tb))
    if not frames:
        dst.unlink(missing_ok=True)
        return None
    return ChunkInfo(dst, 0, first, min(last, end), frames, dst.stat().st_size)


def cut_segment(src: Path, dst: Path, seconds: float) -> int:
    """The first `seconds` of a FLAC segment into `dst`; its frame count."""
    data, rate = sf.read(str(src), dtype="int16", always_2d=True)
    keep = data[: round(seconds * rate)]
    sf.write(str(dst), keep, rate, subtype="PCM_16", format="FLAC")
    return len(keep)


def assemble(
    piece: Piece,
    home: Path,
    seconds: float,
    *,
    screenshot_interval: float = 120.0,
    name: str = "One hour of work (assembled)",
) -> Assembled:
    """Create the long session in the library at `home` (which must not hold others)."""
    home.mkdir(parents=True, exist_ok=True)
    Taskerino.open(home).close()  # creates the database like any command
    layout = resolve_home(home)
    store = open_store(None, layout.database)
    media = MediaLibrary(store, open_blob_store(None, layout.blobs))
    scratch = Path(tempfile.mkdtemp(prefix="assemble-", dir=home))
    length = piece.duration
    cycles = seconds / length
    shifts = [c * length for c in range(math.ceil(cycles))]
    start_wall = piece.start_wall  # the session "started" when the piece did
    config = SessionConfig(**{**vars(piece.config), "screenshot_interval": screenshot_interval})
    session = Session(id=new_id(), name=name, start_time=utc_iso(start_wall), config=config)
    video = SessionVideo(
        id=new_id(),
        session_id=session.id,
        width=piece.video.width,
        height=piece.video.height,
        fps=piece.video.fps,
        sources=list(piece.video.sources),
        compositor=piece.video.compositor,
        chunking_status="processing",
    )
    try:
        with store.transaction():
            store.create_session(session)
            store.save_video(video)
        # Video chunks, cycle after cycle.
        chunk_paths: list[Path] = []
        index = 0
        for shift in shifts:
            for start, _end, path in piece.chunks:
                if shift + start >= seconds:
                    break
                out = scratch / f"chunk-{index:05d}.mp4"
                info = shift_chunk(path, out, shift, seconds)
                if info is None:
                    continue
                info = ChunkInfo(
                    out, index, info.start_offset, info.end_offset, info.frames, info.bytes
                )
                stored = store_chunk(media, video.id, info)
                assert stored is not None
                chunk_paths.append(stored)
                index += 1
        # Audio segments.
        segment_paths: list[Path] = []
        n = 0
        for shift in shifts:
            for offset, duration, path in piece.segments:
                at = shift + offset
                if at >= seconds or offset >= length:
                    break
                keep = min(duration, seconds - at, length - offset)
                copy = scratch / f"segment-{n:05d}.flac"
                if keep < duration - 1e-3:
                    frames = cut_segment(path, copy, keep)
                else:
                    shutil.copyfile(path, copy)
                    frames = round(duration * RATE)
                stored = store_segment(media, session.id, SegmentInfo(copy, n, at, keep, frames))
                assert stored is not None
                segment_paths.append(stored)
                n += 1
        # Screenshots: the piece's nearest to each moment a 2-minute recorder would take one.
        taken = 0
        hashes: set[str] = set()
        for k in range(math.ceil(seconds / screenshot_interval)):
            cycle, position = divmod(k * screenshot_interval, length)
            offset_in, path, width, height = min(
                piece.screenshots, key=lambda s: abs(s[0] - position)
            )
            at = on_timeline(cycle * length + offset_in)
            if at >= seconds:
                continue
            copy = scratch / f"shot-{k:04d}.webp"
            shutil.copyfile(path, copy)

            def add_row(attachment: Any, at: float = at) -> None:
                store.add_screenshot(
                    SessionScreenshot(
                        id=new_id(),
                        session_id=session.id,
                        timestamp=utc_iso(start_wall + at),
                        media_offset=at,
                        attachment_id=attachment.id,
                        hash=attachment.hash,
                    )
                )
                hashes.add(attachment.hash)

            media.ingest(
                copy,
                "image",
                f"screenshot-{at:09.3f}.webp",
                width=width,
                height=height,
                then=add_row,
            )
            taken += 1
        # Activity and notes.
        events = notes = 0
        with store.transaction():
            for c, shift in enumerate(shifts):
                for offset, app, title in piece.activity:
                    at = on_timeline(shift + offset)
                    if at >= seconds:
                        break
                    store.add_activity(
                        ActivityEvent(
                            new_id(), session.id, utc_iso(start_wall + at), at, app, title
                        )
                    )
                    events += 1
                at = on_timeline(shift + 1.0)
                store.add_context_item(
                    ContextItem(
                        new_id(),
                        session.id,
                        utc_iso(start_wall + at),
                        at,
                        "note",
                        f"part {c + 1}: follow up on the release checklist",
                    )
                )
                notes += 1
        # The end, as Lifecycle._finish does it: audio first (the video muxes it).
        staging = layout.staging / session.id
        audio_finisher, audio_path = join_and_attach(media, segment_paths, staging / "audio")
        video_finisher = finish_video(media, video, chunk_paths, staging / "video", audio_path)
        with store.transaction():
            row = store.session_for_update(session.id)
            row.status = "completed"
            row.end_time = utc_iso(start_wall + seconds)
            row.total_duration = on_timeline(seconds)
            for finish in (audio_finisher, video_finisher):
                if finish is not None:
                    finish(row)
            store.update_session(row)
            queue_enrichment(store, session.id)
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        store.close()
    return Assembled(
        session_id=session.id,
        seconds=seconds,
        cycles=cycles,
        chunks=len(chunk_paths),
        segments=len(segment_paths),
        screenshots=taken,
        distinct_screenshots=len(hashes),
        activity=events,
        notes=notes,
        shift=shifts,
    )
