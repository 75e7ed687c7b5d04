"""The lifecycle of the sessions this process records: start, pause, resume, end.

`Lifecycle` is the one owner of a session's state. Every change of a session happens in
one store transaction that first reads the session for update; recorders only add
children (screenshots, segments, chunks). A session recorded by another process is
steered through `Steering`; a dead one is left to `Recovery`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import heap
from ..config import RESERVE_BYTES, Layout
from ..errors import InvalidInput, NotFound, RecorderError, StorageError, TaskerinoError
from ..models import (
    ContextItem,
    ContextItemType,
    RecordingStats,
    Session,
    SessionConfig,
    SessionStatus,
    new_id,
    on_timeline,
    parse_time,
    utc_now,
)
from ..process import current_owner
from ..recording.base import MediaClock, Recorder, RecordingContext
from ..recording.live import LiveRecording, RecordingRegistry
from ..rules import (
    CONTEXT_ITEM_TYPES,
    FIRST_STAGES,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_NOTE,
    STAGES,
    check_text,
)
from ..store.base import Store
from ..store.media import MediaLibrary
from ..store.queue import PersistenceQueue, QueueEvent
from ..store.uploads import Uploads
from ..store.watch import Topic, Watch
from .configure import configure
from .recorders import build_recorders
from .steering import Steering

log = logging.getLogger("taskerino.sessions")

# A recorder waits for commands from other processes (`Topic.commands`) and looks for them
# when woken, and at least this often besides: a lost wake costs at most that long.
POLL_SECONDS = 1.0
STATS_SECONDS = 1.0  # how often its stats and heartbeat are published
# How often the free memory inside the C heap's arenas goes back to the system (a few
# tenths of a millisecond each time; see taskerino.heap).
TRIM_SECONDS = 10.0
OWNER_FILE = ".owner"  # in a staging folder: the process writing there
TERMINAL: tuple[SessionStatus, ...] = ("completed", "interrupted")

Listener = Callable[[str, str], None]  # (session id, message)


@dataclass
class StartRequest:
    name: str = ""
    description: str = ""
    config: SessionConfig = field(default_factory=SessionConfig)
    tags: list[str] = field(default_factory=list)


def queue_enrichment(store: Store, session_id: str) -> None:
    """Queue a session's enrichment; called inside the transaction that ends it, so a
    session is never completed without its jobs, nor jobs queued for a live session."""
    now = time.time()
    for stage in STAGES:
        store.set_stage_status(session_id, stage, "pending")
    for stage in FIRST_STAGES:
        store.enqueue_job(session_id, stage, now=now)


def seconds_between(start: str, end: str) -> float:
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())


class Lifecycle:
    def __init__(
        self,
        layout: Layout,
        store: Store,
        media: MediaLibrary,
        registry: RecordingRegistry,
        steering: Steering,
    ) -> None:
        self.layout = layout
        self.store = store
        self.media = media
        self.registry = registry
        self.steering = steering
        self.listeners: list[Listener] = []
        # Called with a session's id after its end committed (e.g. the storage budget).
        self.after_end: list[Callable[[str], None]] = []
        self.failures: dict[str, list[str]] = {}  # why recorders stopped, by session
        self._keepers: dict[str, Keeper] = {}
        # Ends run apart from the recording's own threads (`end_soon`): joined by `close`,
        # which must not release the store under them.
        self._ending: list[threading.Thread] = []
        # Live figures (stats, heartbeats) are saved through the queue, off the recorders'
        # threads; state changes of a session are written synchronously in transactions.
        self.queue: PersistenceQueue[Callable[[], None]] = PersistenceQueue(self._apply)
        self.queue.subscribe(_log_queue_event)

    def _apply(self, writes: Sequence[Callable[[], None]]) -> None:
        with self.store.transaction():
            for write in writes:
                write()

    def close(self) -> None:
        """End every session this process records, then stop the queue."""
        for recording in list(self.registry):
            try:
                self.end(recording.session_id)
            except TaskerinoError as exc:
                log.error("could not end session %s: %s", recording.session_id, exc)
        for thread in list(self._ending):
            thread.join()
        self.queue.shutdown()

    def report(self, session_id: str, message: str) -> None:
        log.warning("session %s: %s", session_id, message)
        for listener in self.listeners:
            listener(session_id, message)

    # --- start --------------------------------------------------------------------------
    def start(self, request: StartRequest) -> Session:
        name = check_text(request.name, "name", MAX_NAME).strip()
        description = check_text(request.description, "description", MAX_DESCRIPTION)
        config = configure(request.config)
        damage = self.store.integrity_problems()
        if damage:
            # Recording into a damaged database could lose the recording with it.
            raise StorageError(
                f"the database is damaged ({damage[0]}): nothing was recorded; see "
                "'taskerino doctor', and restore a backup or move the database aside"
            )
        recorders = build_recorders(config)
        session = Session(
            id=new_id(),
            name=name or f"Session {utc_now()[:16]}",
            description=description,
            start_time=utc_now(),
            config=config,
            tags=list(request.tags),
        )
        clock = MediaClock()
        uploads = Uploads(self.media, report=lambda message: self.report(session.id, message))
        prepared = self._prepare(session.id, recorders, clock, uploads)
        with self.store.transaction():
            self.store.create_session(session)
            self.store.set_recorder(session.id, current_owner())
            self.store.heartbeat(session.id, time.time())
        recording = LiveRecording(session.id, prepared, clock, uploads)
        self.registry.add(recording)
        for recorder in prepared:
            recorder.begin()
        keeper = Keeper(self, recording)
        self._keepers[session.id] = keeper
        keeper.start()
        return self.store.get_session(session.id)

    def _prepare(
        self, session_id: str, recorders: list[Recorder], clock: MediaClock, uploads: Uploads
    ) -> list[Recorder]:
        """Open every recorder's devices; on any failure close the ones opened, leave nothing."""
        staging = self.layout.staging / session_id
        prepared: list[Recorder] = []
        try:
            # Recorders write here before the session row exists: the owner file keeps
            # another process's recovery from taking the folder for a dead one's.
            staging.mkdir(parents=True, exist_ok=True)
            (staging / OWNER_FILE).write_text(current_owner().encode())
            for recorder in recorders:
                folder = staging / recorder.kind
                folder.mkdir(parents=True, exist_ok=True)
                context = RecordingContext(
                    session_id,
                    self.store,
                    self.media,
                    clock,
                    folder,
                    lambda message: self.report(session_id, message),
                    uploads,
                )
                recorder.prepare(context)
                prepared.append(recorder)
        except Exception as exc:
            for recorder in prepared:
                recorder.stop()
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, TaskerinoError):
                raise
            raise RecorderError(f"could not start recording: {exc}") from exc
        return prepared

    # --- pause / resume -----------------------------------------------------------------
    def pause(self, session_id: str) -> Session:
        return self._set_paused(session_id, True)

    def resume(self, session_id: str) -> Session:
        return self._set_paused(session_id, False)

    def _set_paused(self, session_id: str, paused: bool) -> Session:
        live = self.registry.find(session_id)
        if live is None:
            return self.steering.steer(session_id, "pause" if paused else "resume")
        with live.end_lock:
            if live.stopped:
                return self.store.get_session(session_id)
            with self.store.transaction():
                session = self.store.session_for_update(session_id)
                if session.status in TERMINAL:
                    return session
                now = utc_now()
                if paused and session.status == "active":
                    live.pause()
                    session.status, session.paused_at = "paused", now
                elif not paused and session.status == "paused":
                    assert session.paused_at is not None
                    session.total_paused += seconds_between(session.paused_at, now)
                    session.status, session.paused_at = "active", None
                    live.resume()
                else:
                    return session
                self.store.update_session(session)
            self.store.write_stats(live.stats())
        return self.store.get_session(session_id)

    # --- end ----------------------------------------------------------------------------
    def end(self, session_id: str) -> Session:
        """Stop every recorder of the session and complete it in one transaction.

        Idempotent: ending an ended session, or ending from two places at once, returns
        the same session and changes nothing.
        """
        live = self.registry.find(session_id)
        if live is None:
            return self.steering.steer(session_id, "end")
        with live.end_lock:
            if not live.stopped:
                self._finish(live)
        return self.store.get_session(session_id)

    def end_soon(self, session_id: str) -> None:
        """End from a thread of the recording itself (which `end` joins): run it apart."""
        thread = threading.Thread(target=self._end_apart, args=(session_id,), daemon=True)
        self._ending = [t for t in self._ending if t.is_alive()] + [thread]
        thread.start()

    def _end_apart(self, session_id: str) -> None:
        try:
            self.end(session_id)
        except TaskerinoError as exc:
            log.error("could not end session %s: %s", session_id, exc)

    def wait(self, session_id: str, timeout: float | None = None) -> bool:
        """Block until a session recorded here has ended; True when it has."""
        live = self.registry.find(session_id)
        return True if live is None else live.ended.wait(timeout)

    def _finish(self, live: LiveRecording) -> None:
        sid = live.session_id
        keeper = self._keepers.pop(sid, None)
        if keeper is not None:
            keeper.stop()
        # The timeline ends now: a note added while the recorders stop cannot land past it.
        end_offset = live.clock.end()
        if live.failures() or self._disk_nearly_full():
            # Most likely the disk is full (a recorder may not have tried to write since
            # it filled): free the reserve so that the last chunk can be salvaged and
            # stored and the ending committed.
            self.layout.reserve.unlink(missing_ok=True)
        try:
            finishers = live.stop()
        except Exception as exc:
            # What is still in staging could not be stored (most likely the disk is full):
            # leave the session to recovery, which salvages it once there is room, rather
            # than complete it without that media.
            self.report(sid, f"a recorder failed while stopping: {exc}")
            self.failures[sid] = [*live.failures(), f"could not finish the recording: {exc}"]
            self._leave_to_recovery(live)
            return
        self.queue.flush()  # no late stats write may land after the final one below
        if live.failures():
            self.failures[sid] = live.failures()
        with self.store.transaction():
            session = self.store.session_for_update(sid)
            if session.status not in TERMINAL:
                now = utc_now()
                if session.status == "paused" and session.paused_at is not None:
                    session.total_paused += seconds_between(session.paused_at, now)
                session.status, session.end_time, session.paused_at = "completed", now, None
                session.total_duration = end_offset
                for finish in finishers:
                    finish(session)
                self.store.update_session(session)
                self.store.set_recorder(sid, None)
                self.store.write_stats(live.stats())
                queue_enrichment(self.store, sid)
        self.registry.remove(sid)
        shutil.rmtree(self.layout.staging / sid, ignore_errors=True)
        for follow in self.after_end:
            follow(sid)
        live.ended.set()

    def _disk_nearly_full(self) -> bool:
        """Less room left in the data folder than the reserve holds."""
        try:
            return self.layout.disk_free() < RESERVE_BYTES
        except OSError:
            return False  # no folder to ask about: nothing to free either

    def _leave_to_recovery(self, live: LiveRecording) -> None:
        """Stop owning the session and keep its staging folder: the next open of the
        library (any command) salvages it as a dead recorder's."""
        sid = live.session_id
        try:
            with self.store.transaction():
                self.store.set_recorder(sid, None)
        except TaskerinoError as exc:
            # The store cannot be written either: once this process is gone, its owner
            # entry names a dead process and recovery takes the session all the same.
            log.error("session %s: %s", sid, exc)
        (self.layout.staging / sid / OWNER_FILE).unlink(missing_ok=True)
        self.registry.remove(sid)
        live.ended.set()

    # --- notes and screenshots ----------------------------------------------------------
    def add_context_item(
        self,
        session_id: str,
        type: ContextItemType,
        content: str,
        media_offset: float | None = None,
    ) -> ContextItem:
        if type not in CONTEXT_ITEM_TYPES:
            raise InvalidInput(
                f"unknown context item type {type!r}: use {', '.join(CONTEXT_ITEM_TYPES)}"
            )
        content = check_text(content, f"the {type}", MAX_NOTE)
        if not content.strip() and type != "marker":
            raise InvalidInput("a note or task needs some text")
        live = self.registry.find(session_id)
        with self.store.transaction():
            session = self.store.session_for_update(session_id)
            end = session.total_duration
            if media_offset is None:
                media_offset = live.clock.offset() if live else (end or 0.0)
            elif media_offset < 0 or (end is not None and media_offset > end):
                allowed = f"from 0 to {end:g}" if end is not None else ">= 0"
                raise InvalidInput(f"media offset must be {allowed} seconds, got {media_offset}")
            item = ContextItem(
                new_id(), session_id, utc_now(), on_timeline(media_offset), type, content
            )
            self.store.add_context_item(item)
        return item

    def annotate_screenshot(
        self,
        session_id: str,
        screenshot_id: str,
        *,
        comment: str | None = None,
        flagged: bool | None = None,
    ) -> None:
        if comment is not None:
            comment = check_text(comment, "comment", MAX_NOTE)
        with self.store.transaction():
            session = self.store.session_for_update(session_id)
            for shot in session.screenshots:
                if shot.id == screenshot_id:
                    if comment is not None:
                        shot.user_comment = comment
                    if flagged is not None:
                        shot.flagged = flagged
                    self.store.update_screenshot(shot)
                    return
        raise NotFound(f"no screenshot {screenshot_id!r} in session {session_id!r}")

    def capture_screenshot(self, session_id: str) -> None:
        """Take a screenshot now in a session this process records."""
        from ..recording.screenshots import ScreenshotRecorder

        for recorder in self.registry.get(session_id).recorders:
            if isinstance(recorder, ScreenshotRecorder):
                recorder.capture_now()
                return
        raise InvalidInput(f"session {session_id} does not record screenshots")


class Keeper:
    """The thread beside a live recording: it carries out commands sent by other processes,
    publishes stats and a heartbeat, ends the session when a recorder cannot go on, and
    gives the C heap's free memory back to the system now and then."""

    def __init__(self, lifecycle: Lifecycle, recording: LiveRecording) -> None:
        self.lifecycle = lifecycle
        self.recording = recording
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"keeper-{recording.session_id[:8]}", daemon=True
        )
        self._last_stats = 0.0
        self._watch: Watch | None = None
        self._last_trim = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.close()  # ends the keeper's wait at once
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        sid = self.recording.session_id
        try:
            watch: Watch | None = self.lifecycle.store.watch([Topic.commands(sid)])
        except TaskerinoError as exc:
            log.warning("session %s: commands are polled (%s)", sid, exc)
            watch = None
        self._watch = watch
        if self._stop.is_set() and watch is not None:
            watch.close()  # stopped while the watch was made
        try:
            while not self._wait(watch):
                try:
                    if not self._tick():
                        return
                except TaskerinoError as exc:
                    log.error("session %s: %s", sid, exc)
        finally:
            if watch is not None:
                watch.close()

    def _wait(self, watch: Watch | None) -> bool:
        """Wait for a command, until the next stats are due at the latest; True once the
        keeper is stopped."""
        due = self._last_stats + STATS_SECONDS - time.monotonic()
        timeout = min(POLL_SECONDS, max(0.0, due))
        if watch is None:
            return self._stop.wait(timeout)
        watch.wait(timeout)  # `stop` closes it
        return self._stop.is_set()

    def _tick(self) -> bool:
        """One round; False when the keeper's work is over."""
        sid, life = self.recording.session_id, self.lifecycle
        for command in life.store.take_commands(sid):
            if command == "pause":
                life.pause(sid)
            elif command == "resume":
                life.resume(sid)
            elif command == "end":
                life.end_soon(sid)
        if self.recording.stopped:
            return False
        failures = self.recording.failures()
        if failures:
            # A recorder that cannot go on (disk full, device lost): end the session with
            # what was written rather than record half of it.
            life.report(sid, "recording stopped: " + failures[0])
            life.end_soon(sid)
            return False
        now = time.monotonic()
        if now - self._last_stats >= STATS_SECONDS:
            self._last_stats = now
            stats, beat = self.recording.stats(), time.time()
            life.queue.enqueue(lambda: _publish(life.store, stats, beat))
        if now - self._last_trim >= TRIM_SECONDS:
            self._last_trim = now
            heap.release()
        return True


def _publish(store: Store, stats: RecordingStats, beat: float) -> None:
    store.write_stats(stats)
    store.heartbeat(stats.session_id, beat)


def _log_queue_event(event: QueueEvent) -> None:
    if event.kind in ("failed", "dropped"):
        log.error(
            "%d %s write(s) %s: %s",
            event.count,
            event.priority,
            event.kind,
            event.error or "queue full",
        )
