"""The video recorder: capture → bounded queue → compositor → bounded queue → encoder.

Three threads, so a slow encode never stalls capture. A frame that finds its queue full
replaces the oldest waiting one, which is counted as dropped; a capture tick missed
because grabbing fell behind is counted as dropped too. Frames identical to the previous
one are not composed or encoded again (variable frame rate); the encoder's timestamps
come from the shared media clock, so the timeline stays exact. A composed picture goes
back to the compositor once it is encoded, which draws the next one into it (only the
sources that changed); one dropped from the queue is left to the garbage collector.

Chunks closed by the encoder are handed to a fourth thread that moves them into the blob
store with their `SessionVideoChunk` row. At stop, the chunks are joined (no re-encoding,
audio muxed in when there is some) into the session's one playable file.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import heap
from ..capture import CaptureBackend, get_backend, open_source
from ..capture.base import Source
from ..errors import TaskerinoError
from ..frame import NO_CHANGE, Box, Frame, union_box
from ..media import ChunkedEncoder, ChunkInfo, Compositor, join_chunks, salvage_chunk
from ..media.compositor import fit
from ..media.encoder import DEFAULT_CRF, SHRUNK_BELOW, SHRUNK_CRF
from ..models import Attachment, Session, SessionVideo, SessionVideoChunk, new_id, on_timeline
from ..store.media import MediaLibrary
from ..store.uploads import Uploads, retrying
from .audio import AudioRecorder
from .base import FETCHED, Finisher, Recorder, RecordingContext

log = logging.getLogger("taskerino.video")

# How long a chunk runs before the next one starts. On this disk crash safety does not
# depend on it (fragments are flushed every half second) and fewer chunks make the join at
# the end faster. With a remote blob store a chunk goes up only once it closes, so its
# length is what a recorder whose machine dies loses: shorter there (docs/scaling.md has
# the cost in objects and requests).
CHUNK_SECONDS = 300.0
REMOTE_CHUNK_SECONDS = 60.0


def chunk_seconds_for(media: MediaLibrary) -> float:
    """The chunk length of a recording into `media`."""
    return REMOTE_CHUNK_SECONDS if media.remote else CHUNK_SECONDS


QUEUE_DEPTH = 4
KEEPALIVE_SECONDS = 0.25


@dataclass
class _Item:
    media_time: float
    captured_at: float  # monotonic
    frames: list[Frame | None]
    # Per frame, where it can differ from the same source's frame in the item before
    # (None: anywhere); a dropped item's boxes go to the item after it.
    boxes: list[Box | None] = field(default_factory=list)

    def box(self, i: int) -> Box | None:
        return self.boxes[i] if i < len(self.boxes) else None

    def absorb(self, dropped: _Item) -> None:
        """Take over what a dropped item before this one changed."""
        n = len(self.frames)
        self.boxes = [union_box(dropped.box(i), self.box(i)) for i in range(n)]


def same_frame(a: Frame | None, b: Frame | None, box: Box | None = None) -> bool:
    """True when both frames exist and hold the same pixels (`box`: the only part of
    them that can differ; None: anywhere).

    Compared as 64-bit words by numpy, which releases the GIL: ~0.6 ms for 1080p, where a
    memoryview comparison took ~40 ms holding it and starved the other threads.
    """
    if a is None or b is None or a.shape != b.shape:
        return False
    if a is b:
        return True  # a source left unchanged hands back its last frame
    if box is not None:
        # Outside the box the frames are known to be the same.
        x, y, w, h = box
        a, b = a[y : y + h, x : x + w], b[y : y + h, x : x + w]
    # A band of rows at a time: frames that differ (a playing video) mostly differ in
    # the first band already. A band's comparison makes a byte per word compared, into
    # a buffer the thread keeps (`_equal`).
    words = a.shape[1] * (a.shape[2] if a.ndim == 3 else 1) // 4
    rows = max(1, min(_BAND_ROWS, _BAND_WORDS // max(1, words)))
    for top in range(0, a.shape[0], rows):
        band_a, band_b = a[top : top + rows], b[top : top + rows]
        if band_a.flags.c_contiguous and band_b.flags.c_contiguous and band_a.nbytes % 8 == 0:
            band_a, band_b = band_a.reshape(-1).view(np.uint64), band_b.reshape(-1).view(np.uint64)
        elif band_a.ndim == 3 and band_a.shape[2] == 4 and band_a.strides[2] == 1:
            band_a, band_b = band_a.view(np.uint32), band_b.view(np.uint32)  # a word a pixel
        if not _equal(band_a, band_b):
            return False
    return True


def _equal(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """`np.array_equal` of two bands of one shape, the comparison made into a buffer the
    thread keeps: a new one each time, of each box's size, left holes in the capturing
    thread's C heap (spec §10)."""
    out: npt.NDArray[np.bool_] | None = getattr(_scratch, "out", None)
    if out is None:
        out = _scratch.out = np.empty(_BAND_WORDS, np.bool_)
    if a.size > out.size:
        return bool(np.array_equal(a, b))
    result = out[: a.size].reshape(a.shape)
    np.equal(a, b, out=result)
    return bool(result.all())


_BAND_ROWS = 128
_BAND_WORDS = 128 * 1024
_scratch = threading.local()


class _DropQueue:
    """A bounded queue where a new item pushes out the oldest, which is counted."""

    def __init__(self, depth: int) -> None:
        self._items: collections.deque[_Item | None] = collections.deque()
        self._depth = depth
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: _Item | None) -> None:
        with self._cond:
            if item is not None and len(self._items) >= self._depth:
                dropped = self._items.popleft()
                self.dropped += 1
                after = self._items[0] if self._items else item
                if dropped is not None and after is not None:
                    after.absorb(dropped)
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float) -> _Item | bool | None:
        """The next item, None for the end marker, False on timeout."""
        with self._cond:
            if not self._items and not self._cond.wait(timeout):
                return False
            return self._items.popleft() if self._items else False


class VideoRecorder(Recorder):
    kind = "video"

    def __init__(
        self,
        sources: list[str],
        compositor: str,
        fps: int,
        width: int,
        height: int,
        backend: CaptureBackend | None = None,
        audio: AudioRecorder | None = None,
        chunk_seconds: float | None = None,  # None: `chunk_seconds_for` its media
        exclude: Sequence[str] = (),
    ) -> None:
        self.source_ids = sources
        self.exclude = list(exclude)
        self.compositor_kind = compositor
        self.fps = fps
        self.width = width
        self.height = height
        self._chunk_seconds = chunk_seconds
        self.chunk_seconds = CHUNK_SECONDS  # as `prepare` sets it for its media
        # The session's audio goes into the video: it must have stopped (and joined its
        # segments) before this recorder joins its chunks.
        self.audio = audio
        self.depends_on = (audio,) if audio is not None else ()
        self._backend = backend
        self._own_backend = False
        self._masking = False
        self._sources: list[Source] = []
        self._ctx: RecordingContext | None = None
        self._video: SessionVideo | None = None
        self._composed = _DropQueue(QUEUE_DEPTH)
        self._captured = _DropQueue(QUEUE_DEPTH)
        self._chunks: queue.Queue[ChunkInfo | None] = queue.Queue()
        self._stored: dict[int, Path] = {}  # chunk index -> its bytes, as stored
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failure: str | None = None
        self._stopped = False
        self._gone_reported: set[str] = set()
        self._hidden: set[str] = set()
        # Figures for RecordingStats.
        self.frames_captured = 0
        self.frames_identical = 0
        self.frames_missed = 0
        self._encoder: ChunkedEncoder | None = None
        self._encoded_times: collections.deque[float] = collections.deque(maxlen=120)
        self._lag_ms = 0.0

    # --- lifecycle ----------------------------------------------------------------------
    def prepare(self, ctx: RecordingContext) -> None:
        self._ctx = ctx
        self._compositor = Compositor(
            self.compositor_kind, len(self.source_ids), self.width, self.height
        )
        slots = self._compositor.slots
        try:
            for source_id in self.source_ids:
                self._sources.append(self._open(source_id))
            cells = [fit(*s.size, slot) for s, slot in zip(self._sources, slots, strict=True)]
            # Text shrunk to fit the picture needs a finer quantiser to stay legible.
            scale = min(c[2] / s.size[0] for s, c in zip(self._sources, cells, strict=True))
            # A source shown smaller gives its frames at that size if it can: it scales
            # straight out of the server's memory, and the picture at its own size is
            # never copied, compared or queued.
            for source, (_, _, width, height) in zip(self._sources, cells, strict=True):
                if width < source.size[0] and height < source.size[1]:
                    source.show_at(width, height)
            for source in self._sources:
                source.grab()  # fail now, before the session starts
        except Exception:
            self._close_sources()
            raise
        self.chunk_seconds = self._chunk_seconds or chunk_seconds_for(ctx.media)
        self._encoder = ChunkedEncoder(
            ctx.staging,
            self.width,
            self.height,
            self.fps,
            self.chunk_seconds,
            self._chunks.put,
            crf=SHRUNK_CRF if scale < SHRUNK_BELOW else DEFAULT_CRF,
        )

    def _open(self, source_id: str) -> Source:
        return open_source(source_id, self._screen)

    def _screen(self) -> CaptureBackend:
        if self._backend is None:
            self._backend = get_backend()
            self._own_backend = True
        if not self._masking:
            # Excluded windows are black in every picture it gives, before we see them.
            self._backend.exclude(self.exclude)
            self._masking = True
        return self._backend

    def begin(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        self._video = SessionVideo(
            id=new_id(),
            session_id=ctx.session_id,
            width=self.width,
            height=self.height,
            fps=self.fps,
            sources=list(self.source_ids),
            compositor=self.compositor_kind,
            chunking_status="processing",
        )
        ctx.store.save_video(self._video)
        # Big blocks (x264's pictures, frames beyond the pools) go back to the system as
        # soon as they are freed, rather than pile up in the threads' arenas.
        heap.fix_policy()
        for name, target in (
            ("video-capture", self._capture_loop),
            ("video-compose", self._compose_loop),
            ("video-encode", self._encode_loop),
            ("video-chunks", self._chunk_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def failure(self) -> str | None:
        return self._failure

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
            assert self._ctx is not None
            self._ctx.report(message)
            self._stop.set()

    def stop(self) -> Finisher | None:
        if self._stopped:
            return None
        self._stopped = True
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._close_sources()
        ctx, video = self._ctx, self._video
        if ctx is None or video is None:
            return None
        # After a failure (disk full) the last chunk was not closed: keep what it holds.
        self._stored.update(
            store_leftover_chunks(ctx.media, video.id, ctx.staging, self._stored, ctx.uploads)
        )
        chunks = [self._stored[i] for i in sorted(self._stored)]
        audio = self.audio.joined if self.audio is not None else None
        return finish_video(ctx.media, video, chunks, ctx.staging, audio)

    def _close_sources(self) -> None:
        for source in self._sources:
            source.close()
        if self._own_backend and self._backend is not None:
            self._backend.close()

    # --- threads ------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        period = 1.0 / self.fps
        previous: list[Frame | None] = [None] * len(self._sources)
        next_tick = time.monotonic()
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.05)
                next_tick = time.monotonic()
                continue
            now = time.monotonic()
            if now < next_tick:
                self._stop.wait(next_tick - now)
                continue
            missed = int((now - next_tick) / period)
            if missed:
                self.frames_missed += missed  # grabbing fell behind: those ticks are lost
            next_tick += (missed + 1) * period
            media_time = ctx.clock.offset(now)
            try:
                # A source whose pixels the server says are unchanged is not grabbed: its
                # last frame stands (a still screen costs almost nothing).
                changed = [
                    p is None or s.changed() for s, p in zip(self._sources, previous, strict=True)
                ]
                frames: list[Frame | None] = [
                    source.grab() if c else p
                    for source, c, p in zip(self._sources, changed, previous, strict=True)
                ]
                boxes = [
                    s.changed_box if c and p is not None else None if c else NO_CHANGE
                    for s, c, p in zip(self._sources, changed, previous, strict=True)
                ]
            except TaskerinoError as exc:
                self._fail(f"video capture stopped: {exc}")
                return
            self.frames_captured += 1
            if not any(changed):
                self.frames_identical += 1
                continue
            for source in self._sources:
                if source.gone and source.id not in self._gone_reported:
                    self._gone_reported.add(source.id)
                    ctx.report(f"source {source.id} is gone; recording goes on without it")
                self._report_hidden(source, ctx)
            if all(same_frame(p, f, b) for p, f, b in zip(previous, frames, boxes, strict=True)):
                self.frames_identical += 1
                continue
            previous = frames
            self._captured.put(_Item(media_time, now, frames, boxes))
        self._captured.put(None)

    def _report_hidden(self, source: Source, ctx: RecordingContext) -> None:
        """A minimised window shows its last picture: say when it hides and comes back."""
        if source.hidden and source.id not in self._hidden:
            self._hidden.add(source.id)
            ctx.report(f"source {source.id} is hidden (minimised); its last picture is kept")
        elif not source.hidden and source.id in self._hidden:
            self._hidden.discard(source.id)
            ctx.report(f"source {source.id} is visible again")

    def _compose_loop(self) -> None:
        while True:
            item = self._captured.get(1.0)
            if item is False:
                continue
            if item is None or isinstance(item, bool):
                self._composed.put(None)
                return
            boxes = [item.box(i) for i in range(len(item.frames))]
            picture = self._compositor.compose(item.frames, boxes)
            # Where the picture differs from the last one: the encoder converts only that.
            box = self._compositor.changed_box
            self._composed.put(_Item(item.media_time, item.captured_at, [picture], [box]))

    def _encode_loop(self) -> None:
        ctx, encoder = self._ctx, self._encoder
        assert ctx is not None and encoder is not None
        try:
            while True:
                item = self._composed.get(KEEPALIVE_SECONDS)
                if item is False:
                    if not self._paused.is_set():
                        # A static screen: push the last picture to disk and keep the
                        # chunk clock running.
                        encoder.keepalive(ctx.clock.offset())
                    continue
                if item is None or isinstance(item, bool):
                    break
                # A keepalive (stamped here, repeating the last picture) can pass a frame
                # that was being composed, and a paused clock can repeat a time. The frame
                # is still a change, and the frames after it are skipped as identical to
                # it: dropped, it would leave the old picture on screen until the next
                # change. It goes right after the last one instead.
                media_time = item.media_time
                if not encoder.follows(media_time):
                    media_time = encoder.next_time()
                frame = item.frames[0]
                assert frame is not None
                encoder.encode(frame, media_time, item.box(0))
                # Converted and sent: the compositor may draw its next picture in it.
                self._compositor.release(frame)
                done = time.monotonic()
                self._encoded_times.append(done)
                self._lag_ms = 0.8 * self._lag_ms + 0.2 * (done - item.captured_at) * 1000
            encoder.close(ctx.clock.offset())
        except (TaskerinoError, OSError) as exc:
            full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            self._fail(("disk full: " if full else "") + f"video encoding stopped: {exc}")
            with contextlib.suppress(TaskerinoError):
                encoder.close()
        finally:
            self._chunks.put(None)

    def _chunk_loop(self) -> None:
        ctx, video = self._ctx, self._video
        assert ctx is not None and video is not None
        while (info := self._chunks.get()) is not None:
            try:
                path = store_chunk(ctx.media, video.id, info, ctx.uploads)
                if path is not None:
                    self._stored[info.index] = path
            except (TaskerinoError, OSError) as exc:
                self._fail(f"could not store video chunk {info.index}: {exc}")

    # --- stats --------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        encoder = self._encoder
        now = time.monotonic()
        recent = [t for t in list(self._encoded_times) if now - t <= 2.0]
        encoded = encoder.frames_encoded if encoder else 0
        return {
            "frames_captured": float(self.frames_captured),
            "frames_processed": float(encoded + self.frames_identical),
            "frames_changed": float(encoded),
            "frames_dropped": float(
                self._captured.dropped + self._composed.dropped + self.frames_missed
            ),
            # Identical frames count towards fps: they are shown, just not re-encoded.
            "fps": len(recent) / 2.0 if recent else 0.0,
            "target_fps": float(self.fps),
            "bytes_written": float(encoder.bytes_written if encoder else 0),
            "encode_lag_ms": self._lag_ms,
        }


def store_chunk(
    media: MediaLibrary, video_id: str, info: ChunkInfo, uploads: Uploads | None = None
) -> Path | None:
    """Move a closed chunk into the blob store with its row, in one transaction; return
    where its bytes now are on this disk, for the join at the end.

    With a remote blob store the chunk's file stays where it is (that is where the join
    reads it) and, given `uploads`, goes up in the background."""

    def add_row(attachment: Attachment) -> None:
        media.store.add_video_chunk(
            SessionVideoChunk(
                id=new_id(),
                video_id=video_id,
                attachment_id=attachment.id,
                index=info.index,
                start_offset=on_timeline(info.start_offset),
                end_offset=on_timeline(info.end_offset),
                frames=info.frames,
                bytes=info.bytes,
            )
        )

    name, duration = f"chunk-{info.index:05d}.mp4", info.end_offset - info.start_offset
    if media.remote:
        if uploads is not None:
            uploads.submit(info.path, "video", name, duration=duration, then=add_row, source="keep")
        else:
            media.ingest(info.path, "video", name, duration=duration, then=add_row, source="keep")
        return info.path
    attachment = media.ingest(info.path, "video", name, duration=duration, then=add_row)
    return media.local_path(attachment)


def finish_video(
    media: MediaLibrary,
    video: SessionVideo,
    chunks: list[Path],
    staging: Path,
    audio: Path | None,
) -> Finisher | None:
    """Join the stored chunks (in order) into one playable file; the finisher attaches it.

    The chunks are read where the blob store keeps them and the joined file is written
    once, hashed once and renamed into the blob store: no bytes are copied twice.
    """
    if not chunks:

        def no_video(session: Session) -> None:
            video.chunking_status = "error"
            media.store.save_video(video)

        return no_video
    out = staging / "full.mp4"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        info = join_chunks(chunks, out, audio)
    except TaskerinoError as exc:
        log.error("could not join the video chunks: %s", exc)

        def failed(session: Session) -> None:
            video.chunking_status = "error"
            media.store.save_video(video)

        return failed
    staged = retrying(
        lambda: media.stage(
            out,
            "video",
            "session.mp4",
            duration=info.duration,
            width=info.width,
            height=info.height,
            move=True,
        ),
        "storing the session's video",
    )

    def attach(session: Session) -> None:
        attachment = media.commit(staged)
        video.full_video_attachment_id = attachment.id
        video.duration = on_timeline(info.duration)
        video.chunking_status = "complete"
        media.store.save_video(video)

    return attach


def store_leftover_chunks(
    media: MediaLibrary,
    video_id: str,
    folder: Path,
    stored: dict[int, Path],
    uploads: Uploads | None = None,
) -> dict[int, Path]:
    """Store the chunk files still in `folder` that are not in `stored` (cut short ones
    salvaged up to their damaged tail); return the newly stored ones by index."""
    added: dict[int, Path] = {}
    kept = set(stored.values())  # files a remote blob store's chunks are joined from
    for path in sorted(folder.glob("chunk-*.mp4")) if folder.is_dir() else []:
        if path in kept:
            continue
        info = salvage_chunk(path)
        if info is None or info.index in stored or info.index in added:
            path.unlink(missing_ok=True)
            continue
        where = store_chunk(media, video_id, info, uploads)
        if where is not None:
            added[info.index] = where
    return added


def salvage_video(
    session: Session, folder: Path, media: MediaLibrary, audio: Path | None
) -> Finisher | None:
    """Recovery: store the chunks a dead recorder left, then join them all with `audio`
    (the session's salvaged audio, if any)."""
    if session.video is None:
        return None
    stored: dict[int, Path] = {}
    for chunk in session.video.chunks:
        # From a remote blob store the stored chunks come back down (maybe to another
        # machine than the one that recorded them) to be joined.
        attachment = media.store.get_attachment(chunk.attachment_id)
        stored[chunk.index] = media.fetch(attachment, folder / FETCHED)
    stored.update(store_leftover_chunks(media, session.video.id, folder, stored))
    chunks = [stored[i] for i in sorted(stored)]
    return finish_video(media, session.video, chunks, folder, audio)
