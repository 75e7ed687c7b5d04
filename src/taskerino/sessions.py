"""The session lifecycle: start, pause, resume, end and recovery.

`SessionManager` is the one owner of a session's state. Every change of a session happens
in one store transaction that first reads the session for update; recorders only add
children (screenshots, segments, chunks). A session recorded by another process is
steered through the store's command queue and watched until the change shows.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import Layout, resolve_home
from .errors import InvalidInput, NotFound, RecorderError, TaskerinoError
from .models import (
    ContextItem,
    ContextItemType,
    RecordingStats,
    Session,
    SessionConfig,
    SessionStatus,
    SessionSummary,
    new_id,
    parse_time,
    utc_iso,
    utc_now,
)
from .process import ProcessOwner, current_owner
from .recording.base import Finisher, MediaClock, Recorder, RecordingContext
from .recording.live import REGISTRY, LiveRecording, RecordingRegistry
from .store.base import BlobStore, Store
from .store.files import FolderBlobStore
from .store.media import MediaLibrary
from .store.queue import PersistenceQueue, QueueEvent
from .store.sqlite import SQLiteStore

log = logging.getLogger("taskerino.sessions")

POLL_SECONDS = 0.2  # how often a recorder looks for commands from other processes
STATS_SECONDS = 1.0
HEARTBEAT_STALE = 30.0
RESERVE_BYTES = 16 << 20  # a recorder on another host is presumed dead after this silence
OWNER_FILE = ".owner"
TERMINAL: tuple[SessionStatus, ...] = ("completed", "interrupted")


@dataclass
class StartRequest:
    name: str = ""
    description: str = ""
    config: SessionConfig = field(default_factory=SessionConfig)
    tags: list[str] = field(default_factory=list)


def build_recorders(config: SessionConfig) -> list[Recorder]:
    recorders: list[Recorder] = []
    if config.screenshots:
        from .recording.screenshots import ScreenshotRecorder

        recorders.append(ScreenshotRecorder(config.screenshot_interval, config.screenshot_source))
    audio = None
    if config.audio or config.system_audio:
        from .recording.audio import AudioRecorder

        audio = AudioRecorder(config.mic, config.audio, config.system_audio, config.balance)
        recorders.append(audio)  # before video: its joined file goes into the video
    if config.video:
        from .recording.video import VideoRecorder

        assert config.compositor is not None
        recorders.append(
            VideoRecorder(
                config.sources,
                config.compositor,
                config.fps,
                config.width,
                config.height,
                audio=(lambda: audio.joined) if audio else None,
            )
        )
    return recorders


def _owner_alive(staging: Path) -> bool:
    try:
        return ProcessOwner.decode((staging / OWNER_FILE).read_text()).is_alive()
    except (OSError, ValueError):
        return False


def _seconds_between(start: str, end: str) -> float:
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())


class SessionManager:
    def __init__(
        self, layout: Layout, store: Store, blobs: BlobStore, registry: RecordingRegistry = REGISTRY
    ) -> None:
        self.layout = layout
        self.store = store
        self.media = MediaLibrary(store, blobs)
        self.registry = registry
        self.events: list[Callable[[str, str], None]] = []
        self._keepers: dict[str, tuple[threading.Event, threading.Thread]] = {}
        self.failures: dict[str, list[str]] = {}  # why recorders stopped, by session
        # Live figures (stats, heartbeats) are saved through the queue, off the recorders'
        # threads; state changes of a session are written synchronously in transactions.
        self.queue: PersistenceQueue[Callable[[], None]] = PersistenceQueue(self._apply)
        self.queue.subscribe(self._on_queue_event)

    def _apply(self, writes: Sequence[Callable[[], None]]) -> None:
        with self.store.transaction():
            for write in writes:
                write()

    @staticmethod
    def _on_queue_event(event: QueueEvent) -> None:
        if event.kind in ("failed", "dropped"):
            log.error(
                "%d %s write(s) %s: %s",
                event.count,
                event.priority,
                event.kind,
                event.error or "queue full",
            )

    @classmethod
    def open(cls, home: str | Path | None = None, *, recover: bool = True) -> SessionManager:
        """Open the data folder (flag > TASKERINO_HOME > default) and recover dead sessions."""
        layout = resolve_home(home)
        store = SQLiteStore(layout.database)
        manager = cls(layout, store, FolderBlobStore(layout.blobs))
        if recover:
            manager.recover()
        manager._keep_reserve()
        return manager

    def _keep_reserve(self) -> None:
        """Set aside disk space that ending a session can use when the disk is full."""
        reserve = self.layout.reserve
        if reserve.exists():
            return
        try:
            with reserve.open("wb") as f:
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
        except OSError:
            reserve.unlink(missing_ok=True)  # no room now: try again next time

    def close(self) -> None:
        for recording in list(self.registry):
            try:
                self.end(recording.session_id)
            except TaskerinoError as exc:
                log.error("could not end session %s: %s", recording.session_id, exc)
        self.queue.shutdown()
        self.store.close()

    # --- reading ------------------------------------------------------------------------
    def get(self, session_id: str) -> Session:
        return self.store.get_session(session_id)

    def list_sessions(
        self,
        status: SessionStatus | None = None,
        query: str | None = None,
        limit: int | None = None,
    ) -> list[SessionSummary]:
        return self.store.list_sessions(status, query, limit)

    def stats(self, session_id: str) -> RecordingStats:
        live = self.registry.find(session_id)
        if live is not None:
            return live.stats()
        self.store.get_session(session_id)  # NotFound for an unknown id
        stats = self.store.read_stats(session_id)
        if stats is None:
            raise NotFound(f"no such recording: session {session_id!r} has no recording stats")
        return stats

    # --- start --------------------------------------------------------------------------
    def start(self, request: StartRequest) -> Session:
        from .recording.validate import validate_config

        config = validate_config(request.config)
        recorders = build_recorders(config)
        session = Session(
            id=new_id(),
            name=request.name.strip() or f"Session {utc_now()[:16]}",
            description=request.description,
            start_time=utc_now(),
            config=config,
            tags=request.tags,
        )
        clock = MediaClock()
        staging = self.layout.staging / session.id
        prepared: list[Recorder] = []
        try:
            # Recorders write here before the session row exists: the owner file keeps
            # another process's recovery from taking the folder for a dead one's.
            staging.mkdir(parents=True, exist_ok=True)
            (staging / OWNER_FILE).write_text(current_owner().encode())
            for recorder in recorders:
                folder = staging / recorder.kind
                folder.mkdir(parents=True, exist_ok=True)
                recorder.prepare(
                    RecordingContext(
                        session.id,
                        self.store,
                        self.media,
                        clock,
                        folder,
                        lambda message: self._report(session.id, message),
                    )
                )
                prepared.append(recorder)
        except Exception as exc:
            for recorder in prepared:
                recorder.stop()
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, TaskerinoError):
                raise
            raise RecorderError(f"could not start recording: {exc}") from exc
        with self.store.transaction():
            self.store.create_session(session)
            self.store.set_recorder(session.id, current_owner())
            self.store.heartbeat(session.id, time.time())
        recording = LiveRecording(session.id, prepared, clock)
        self.registry.add(recording)
        for recorder in prepared:
            recorder.begin()
        self._start_keeper(recording)
        return self.get(session.id)

    def _report(self, session_id: str, message: str) -> None:
        log.warning("session %s: %s", session_id, message)
        for listener in self.events:
            listener(session_id, message)

    def _start_keeper(self, recording: LiveRecording) -> None:
        """A thread that carries out commands from other processes and publishes stats."""
        stop = threading.Event()

        def keep() -> None:
            last_stats = 0.0
            while not stop.wait(POLL_SECONDS):
                sid = recording.session_id
                try:
                    for command in self.store.take_commands(sid):
                        self._run_command(sid, command)
                    if recording.stopped:
                        return
                    failures = recording.failures()
                    if failures:
                        # A recorder that cannot go on (disk full, device lost): end the
                        # session with what was written rather than record half of it.
                        self._report(sid, "recording stopped: " + failures[0])
                        threading.Thread(target=self.end, args=(sid,), daemon=True).start()
                        return
                    now = time.monotonic()
                    if now - last_stats >= STATS_SECONDS:
                        last_stats = now
                        stats, beat = recording.stats(), time.time()

                        def publish(stats: RecordingStats = stats, beat: float = beat) -> None:
                            self.store.write_stats(stats)
                            self.store.heartbeat(stats.session_id, beat)

                        self.queue.enqueue(publish)
                except TaskerinoError as exc:
                    log.error("session %s: %s", sid, exc)

        thread = threading.Thread(
            target=keep, name=f"keeper-{recording.session_id[:8]}", daemon=True
        )
        self._keepers[recording.session_id] = (stop, thread)
        thread.start()

    def _run_command(self, session_id: str, command: str) -> None:
        if command == "pause":
            self.pause(session_id)
        elif command == "resume":
            self.resume(session_id)
        elif command == "end":
            # Ending joins threads, including this keeper's caller chain: run it apart.
            threading.Thread(target=self.end, args=(session_id,), daemon=True).start()

    # --- pause / resume -----------------------------------------------------------------
    def pause(self, session_id: str) -> Session:
        return self._set_paused(session_id, True)

    def resume(self, session_id: str) -> Session:
        return self._set_paused(session_id, False)

    def _set_paused(self, session_id: str, paused: bool) -> Session:
        live = self.registry.find(session_id)
        if live is None:
            return self._remote(
                session_id, "pause" if paused else "resume", "paused" if paused else "active"
            )
        with live.end_lock:
            if live.stopped:
                return self.get(session_id)
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
                    session.total_paused += _seconds_between(session.paused_at, now)
                    session.status, session.paused_at = "active", None
                    live.resume()
                else:
                    return session
                self.store.update_session(session)
            self.store.write_stats(live.stats())
        return self.get(session_id)

    # --- end ----------------------------------------------------------------------------
    def end(self, session_id: str) -> Session:
        """Stop every recorder of the session and complete it in one transaction.

        Idempotent: ending an ended session, or ending from two places at once, returns
        the same session and changes nothing.
        """
        live = self.registry.find(session_id)
        if live is None:
            return self._remote(session_id, "end", "completed")
        with live.end_lock:
            if not live.stopped:
                self._finish(live)
        return self.get(session_id)

    def wait(self, session_id: str, timeout: float | None = None) -> bool:
        """Block until a session recorded here has ended; True when it has."""
        live = self.registry.find(session_id)
        return True if live is None else live.ended.wait(timeout)

    def _finish(self, live: LiveRecording) -> None:
        sid = live.session_id
        keeper = self._keepers.pop(sid, None)
        if keeper is not None:
            keeper[0].set()
            if keeper[1] is not threading.current_thread():
                keeper[1].join()
        end_offset = live.clock.offset()
        if live.failures():
            # Most likely the disk is full: free the reserve so that the last chunk can be
            # salvaged and the ending committed.
            self.layout.reserve.unlink(missing_ok=True)
        try:
            finishers = live.stop()
        except Exception as exc:
            self._report(sid, f"a recorder failed while stopping: {exc}")
            finishers = []
        self.queue.flush()  # no late stats write may land after the final one below
        if live.failures():
            self.failures[sid] = live.failures()
        with self.store.transaction():
            session = self.store.session_for_update(sid)
            if session.status not in TERMINAL:
                now = utc_now()
                if session.status == "paused" and session.paused_at is not None:
                    session.total_paused += _seconds_between(session.paused_at, now)
                session.status, session.end_time, session.paused_at = "completed", now, None
                session.total_duration = round(end_offset, 3)
                for finish in finishers:
                    finish(session)
                self.store.update_session(session)
                self.store.set_recorder(sid, None)
                self.store.write_stats(live.stats())
        self.registry.remove(sid)
        shutil.rmtree(self.layout.staging / sid, ignore_errors=True)
        live.ended.set()

    def _remote(self, session_id: str, command: str, expect: SessionStatus) -> Session:
        """Steer a session that another process records; wait until the change shows."""
        session = self.store.get_session(session_id)
        if session.status in TERMINAL:
            if command == "end":
                return session
            raise InvalidInput(
                f"session {session_id} is {session.status}: only a live session can be "
                f"{'paused' if command == 'pause' else 'resumed'}"
            )
        if session.status == expect:
            return session
        if not self._recorder_alive(session_id):
            self.recover()
            session = self.store.get_session(session_id)
            if command == "end" or session.status in TERMINAL:
                return session
        self.store.push_command(session_id, command)
        deadline = time.monotonic() + (120.0 if command == "end" else 10.0)
        while time.monotonic() < deadline:
            session = self.store.get_session(session_id)
            if session.status == expect or session.status in TERMINAL:
                return session
            if not self._recorder_alive(session_id):
                self.recover()
                return self.store.get_session(session_id)
            time.sleep(0.05)
        raise RecorderError(
            f"the recorder of session {session_id} did not {command} within the time allowed"
        )

    def _recorder_alive(self, session_id: str) -> bool:
        for live in self.store.live_sessions():
            if live.id == session_id:
                return self._alive(live.owner, live.heartbeat)
        return False

    @staticmethod
    def _alive(owner: ProcessOwner | None, heartbeat: float | None) -> bool:
        if owner is None:
            return False
        if owner.host != current_owner().host:
            return heartbeat is not None and time.time() - heartbeat < HEARTBEAT_STALE
        return owner.is_alive()

    # --- notes and screenshots ----------------------------------------------------------
    def add_context_item(
        self,
        session_id: str,
        type: ContextItemType,
        content: str,
        media_offset: float | None = None,
    ) -> ContextItem:
        if type not in ("note", "task", "marker"):
            raise InvalidInput(f"unknown context item type {type!r}: use note, task or marker")
        if not content.strip() and type != "marker":
            raise InvalidInput("a note or task needs some text")
        live = self.registry.find(session_id)
        with self.store.transaction():
            session = self.store.session_for_update(session_id)
            if media_offset is None:
                media_offset = live.clock.offset() if live else (session.total_duration or 0.0)
            if media_offset < 0:
                raise InvalidInput(f"media offset must be >= 0, got {media_offset}")
            item = ContextItem(new_id(), session_id, utc_now(), media_offset, type, content)
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
        from .recording.screenshots import ScreenshotRecorder

        for recorder in self.registry.get(session_id).recorders:
            if isinstance(recorder, ScreenshotRecorder):
                recorder.capture_now()
                return
        raise InvalidInput(f"session {session_id} does not record screenshots")

    # --- recovery and health ------------------------------------------------------------
    def recover(self) -> list[str]:
        """Mark sessions whose recorder died `interrupted`, with what they wrote attached."""
        done: list[str] = []
        me = current_owner()
        for live in self.store.live_sessions():
            if self.registry.find(live.id) is not None or self._alive(live.owner, live.heartbeat):
                continue
            with self.store.transaction():
                # Claim it: only one process salvages a session.
                current = [s for s in self.store.live_sessions() if s.id == live.id]
                if not current or current[0].owner != live.owner:
                    continue
                self.store.set_recorder(live.id, me)
            self._salvage(live.id, live.heartbeat)
            done.append(live.id)
        self.media.sweep()
        if self.layout.staging.is_dir():
            live_ids = {s.id for s in self.store.live_sessions()}
            for folder in self.layout.staging.iterdir():
                if folder.name not in live_ids and not _owner_alive(folder):
                    shutil.rmtree(folder, ignore_errors=True)
        return done

    def _salvage(self, session_id: str, heartbeat: float | None) -> None:
        from .recording.salvage import SALVAGERS  # media code, only needed here

        staging = self.layout.staging / session_id
        finishers: list[Finisher] = []
        session = self.store.get_session(session_id)
        for kind, salvage in SALVAGERS.items():
            folder = staging / kind
            if folder.is_dir():
                finisher = salvage(session, folder, self.media)
                if finisher is not None:
                    finishers.append(finisher)
        with self.store.transaction():
            session = self.store.session_for_update(session_id)
            last_alive = utc_now() if heartbeat is None else utc_iso(heartbeat)
            stop_at = session.paused_at or last_alive
            duration = max(
                0.0, _seconds_between(session.start_time, stop_at) - session.total_paused
            )
            media_end = max(
                [s.media_offset for s in session.screenshots]
                + [a.media_offset + a.duration for a in session.audio_segments]
                + [c.end_offset for c in (session.video.chunks if session.video else [])]
                + [0.0]
            )
            session.status, session.end_time, session.paused_at = "interrupted", last_alive, None
            session.total_duration = round(max(duration, media_end), 3)
            for finish in finishers:
                finish(session)
            self.store.update_session(session)
            self.store.set_recorder(session_id, None)
            stats = self.store.read_stats(session_id)
            if stats is not None:
                stats.state = "stopped"
                self.store.write_stats(stats)
        shutil.rmtree(staging, ignore_errors=True)
        log.warning(
            "session %s was left by a recorder that died: marked interrupted, its media kept",
            session_id,
        )

    def doctor(self) -> list[str]:
        problems = self.store.integrity_problems()
        unreferenced, missing = self.media.orphans()
        problems += [f"orphan file: blob {h} has no attachment row" for h in unreferenced]
        problems += [f"missing file: attachment with hash {h} has no blob" for h in missing]
        for live in self.store.live_sessions():
            if self.registry.find(live.id) is None and not self._alive(live.owner, live.heartbeat):
                problems.append(f"session {live.id} is {live.status} without a live recorder")
        return problems
