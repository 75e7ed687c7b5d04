"""The audio recorder: microphone and/or system audio in 10 s FLAC segments.

Each closed segment becomes an audio attachment with its `SessionAudioSegment` row. At
stop the segments are joined into one file: the session's playable audio, which the video
recorder also muxes into the session's video. The join happens as the recording goes: each
segment's FLAC frames are appended, as they are, to that file when the segment closes, so
the end only finishes it (an hour's join at the end took seconds). A killed recorder's
half-joined file is dropped; recovery joins the stored segments again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from ..capture.audio import AudioCapture, validate_audio
from ..errors import TaskerinoError
from ..media.audio import RATE, AudioJoiner, SegmentInfo, join_audio, recover_segments
from ..models import Attachment, Session, SessionAudioSegment, new_id, on_timeline, utc_now
from ..store.media import MediaLibrary, sha256_file
from ..store.uploads import Uploads, retrying
from .base import FETCHED, Finisher, Recorder, RecordingContext

log = logging.getLogger("taskerino.audio")

SEGMENT_SECONDS = 10.0
JOINED_NAME = "session.m4a"  # the segments' FLAC frames, copied as they are


class AudioRecorder(Recorder):
    kind = "audio"

    def __init__(
        self,
        mic: str | None,
        microphone: bool,
        system_audio: bool,
        balance: int,
        segment_seconds: float = SEGMENT_SECONDS,
    ) -> None:
        self.mic = mic
        self.microphone = microphone
        self.system_audio = system_audio
        self.balance = balance
        self.segment_seconds = segment_seconds
        self._ctx: RecordingContext | None = None
        self._capture: AudioCapture | None = None
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._stopped = False
        # The stored segments' bytes, in order, for a join at the end if joining as it
        # records fails; as text (a third of the memory of `Path`s: one every audio segment).
        self._segments: list[str] = []
        self._joiner: AudioJoiner | None = None  # None once it failed: joined at the end
        self._segment_bytes = 0  # of the closed segments
        self.joined: Path | None = None  # the session's audio once stopped

    def prepare(self, ctx: RecordingContext) -> None:
        self._ctx = ctx
        self._joiner = AudioJoiner(ctx.staging / f"{JOINED_NAME}.partial")
        selection = validate_audio(self.mic, self.system_audio, self.balance, self.microphone)
        self._capture = AudioCapture(
            ctx.staging,
            selection.mic.id if selection.mic else None,
            selection.system.id if selection.system else None,
            selection.balance,
            self.segment_seconds,
            self._store_segment,
            origin=ctx.clock.monotonic_of(0.0),
        )
        self._capture.start()  # opens the devices now: a failure stops the session start

    def begin(self) -> None:
        pass  # capture runs since prepare; its timeline starts at the session's offset 0

    def pause(self) -> None:
        assert self._capture is not None and self._ctx is not None
        self._capture.pause(self._ctx.clock.last_change)

    def resume(self) -> None:
        assert self._capture is not None and self._ctx is not None
        self._capture.resume(self._ctx.clock.last_change)

    @property
    def failure(self) -> str | None:
        if self._failure is None and self._capture is not None and self._capture.error:
            self._failure = f"audio recording failed: {self._capture.error}"
        return self._failure

    def _store_segment(self, info: SegmentInfo) -> None:
        ctx = self._ctx
        assert ctx is not None
        with contextlib.suppress(OSError):
            self._segment_bytes += info.path.stat().st_size
        if self._joiner is not None:
            try:
                self._joiner.append(info.path)  # before it is stored: the file is here now
            except (TaskerinoError, OSError) as exc:
                log.warning("audio: joining as it records stopped, joining at the end: %s", exc)
                self._joiner.abandon()
                self._joiner = None
        try:
            path = store_segment(ctx.media, ctx.session_id, info, ctx.uploads)
            if path is not None:
                self._segments.append(str(path))
        except (TaskerinoError, OSError) as exc:
            self._failure = f"could not store audio segment {info.index}: {exc}"

    def stop(self) -> Finisher | None:
        with self._lock:
            if self._stopped or self._capture is None or self._ctx is None:
                return None
            self._stopped = True
        ctx = self._ctx
        self._capture.stop()  # reports the last partial segment through _store_segment
        joined = self._finish_join(ctx.staging)
        if joined is not None:
            finisher, self.joined = attach_joined(ctx.media, joined)
        else:
            finisher, self.joined = join_and_attach(
                ctx.media, [Path(p) for p in self._segments], ctx.staging
            )
        return finisher

    def _finish_join(self, folder: Path) -> Path | None:
        """The file joined while recording, finished; None when it must be joined anew."""
        joiner, self._joiner = self._joiner, None
        if joiner is None:
            return None
        try:
            if not joiner.close():
                return None
            out = folder / JOINED_NAME
            os.replace(joiner.out, out)
            return out
        except (TaskerinoError, OSError) as exc:
            log.warning("audio: the file joined while recording is unusable: %s", exc)
            joiner.abandon()
            return None

    def stats(self) -> dict[str, float]:
        capture, joiner = self._capture, self._joiner
        if capture is None:
            return {}
        return {
            "audio_level_dbfs": capture.level_dbfs,
            "audio_overruns": float(capture.overruns),
            "audio_seconds_lost": capture.frames_lost / RATE,
            "audio_seconds": capture.seconds_recorded,
            # Closed segments, the one being recorded and the file joined so far.
            "bytes_written": float(
                self._segment_bytes + capture.open_segment_bytes + (joiner.bytes if joiner else 0)
            ),
        }


def store_segment(
    media: MediaLibrary, session_id: str, info: SegmentInfo, uploads: Uploads | None = None
) -> Path | None:
    """Store a closed segment with its row; return where its bytes now are on this disk.

    With a remote blob store the segment's file stays where it is, for the join at the
    end, and, given `uploads`, goes up in the background."""

    def add_row(attachment: Attachment) -> None:
        media.store.add_audio_segment(
            SessionAudioSegment(
                id=new_id(),
                session_id=session_id,
                timestamp=utc_now(),
                media_offset=on_timeline(info.media_offset),
                duration=info.duration,
                attachment_id=attachment.id,
            )
        )

    name = f"audio-{info.index:05d}.flac"
    if media.remote:
        if uploads is not None:
            uploads.submit(
                info.path, "audio", name, duration=info.duration, then=add_row, source="keep"
            )
        else:
            media.ingest(
                info.path, "audio", name, duration=info.duration, then=add_row, source="keep"
            )
        return info.path
    attachment = media.ingest(info.path, "audio", name, duration=info.duration, then=add_row)
    return media.local_path(attachment)


def join_and_attach(
    media: MediaLibrary, segments: list[Path], folder: Path
) -> tuple[Finisher | None, Path | None]:
    """Join the segments into the session's one audio file, put it in the blob store, and
    return a finisher that attaches it plus where its bytes are (for the video to mux)."""
    if not segments:
        return None, None
    out = folder / JOINED_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        join_audio(segments, out)
    except (TaskerinoError, OSError, RuntimeError) as exc:
        log.error("could not join the audio segments: %s", exc)
        return None, None
    return attach_joined(media, out)


def attach_joined(media: MediaLibrary, out: Path) -> tuple[Finisher | None, Path | None]:
    """Put the joined file in the blob store; the finisher attaches it to the session."""
    staged = retrying(
        lambda: media.stage(out, "audio", JOINED_NAME, duration=None, move=True),
        "storing the session's audio",
    )

    def attach(session: Session) -> None:
        session.audio_attachment_id = media.commit(staged).id

    # The video muxes this file: where the blob store keeps it, or (remote) where it is.
    return attach, media.local_path(staged) or out


def salvage_audio(
    session: Session, folder: Path, media: MediaLibrary
) -> tuple[Finisher | None, Path | None]:
    """Recovery: store the segments a dead recorder left (the partial one salvaged), join
    all of them; returns the finisher and the joined file, as `join_and_attach` does."""
    known = {s.attachment_id for s in session.audio_segments}
    # From a remote blob store the stored segments come back down to be joined.
    segments = [
        media.fetch(media.store.get_attachment(s.attachment_id), folder / FETCHED)
        for s in session.audio_segments
    ]
    offset = max((s.media_offset + s.duration for s in session.audio_segments), default=0.0)
    (folder / f"{JOINED_NAME}.partial").unlink(missing_ok=True)  # cut short by the kill
    for info in recover_segments(folder) if folder.is_dir() else []:
        if info.path.is_file():
            # Killed after a segment's row committed but before its file was removed?
            existing = media.store.attachment_by_hash(sha256_file(info.path))
            if existing is not None and existing.id in known:
                info.path.unlink()
                continue
            # Offsets of the files left behind follow the segments already stored.
            path = store_segment(
                media,
                session.id,
                SegmentInfo(info.path, info.index, offset, info.duration, info.frames),
            )
            if path is not None:
                segments.append(path)
            offset += info.duration
    return join_and_attach(media, segments, folder)
