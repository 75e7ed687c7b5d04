"""`Taskerino`: the one front door of the library.

The CLI, the demo, the web app and the worker hold a `Taskerino` and nothing behind it.
It wires the store and blob store chosen by URL, the registry of this process's live
recordings, the lifecycle, steering and recovery, and checks every input from a user
against the rule book before anything happens.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from ..config import Layout, resolve_home
from ..errors import NotFound, TaskerinoError
from ..models import (
    Attachment,
    ContextItem,
    ContextItemType,
    RecordingStats,
    Session,
    SessionStatus,
    SessionSummary,
)
from ..recording.live import RecordingRegistry
from ..rules import (
    MAX_DESCRIPTION,
    MAX_NAME,
    check_query,
    check_session_id,
    check_tags,
    check_text,
)
from ..store.base import BlobStore, Store
from ..store.media import MediaLibrary
from ..store.registry import open_blob_store, open_store
from .lifecycle import Lifecycle, Listener, StartRequest
from .recovery import Recovery
from .steering import Steering
from .views import session_json, summary_json

__all__ = ["StartRequest", "Taskerino"]


class Taskerino:
    """A library of sessions: one data folder, one store, one blob store."""

    def __init__(self, layout: Layout, store: Store, blobs: BlobStore) -> None:
        self.layout = layout
        self._store = store
        self._media = MediaLibrary(store, blobs)
        self._registry = RecordingRegistry()  # the live recordings of this process
        self._recovery = Recovery(layout, store, self._media, self._registry)
        steering = Steering(store, self._recovery.recorder_alive, self._recovery.recover)
        self._life = Lifecycle(layout, store, self._media, self._registry, steering)
        self._closed = False

    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        *,
        store: str | None = None,
        media: str | None = None,
        recover: bool = True,
    ) -> Taskerino:
        """Open a library: the data folder (flag > TASKERINO_HOME > the platform default)
        holds the embedded store and blobs unless `store`/`media` URLs name others.
        Recovers sessions left by dead recorders unless `recover` is False."""
        layout = resolve_home(home)
        opened_store = open_store(store, layout.database)
        try:
            library = cls(layout, opened_store, open_blob_store(media, layout.blobs))
            if recover:
                library.recover()
            library._recovery.keep_reserve()
        except BaseException:
            opened_store.close()
            raise
        return library

    def close(self) -> None:
        """End every session this process records, flush, release the store. Safe twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._life.close()
        finally:
            self._store.close()

    def __enter__(self) -> Taskerino:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def home(self) -> Path:
        return self.layout.home

    # --- sessions -----------------------------------------------------------------------
    def start(self, request: StartRequest) -> Session:
        """Check the whole request (rule book and devices), open every recorder, then
        create the session and start recording. Nothing is left behind on failure."""
        request.tags = check_tags(request.tags)
        return self._life.start(request)

    def pause(self, session_id: str) -> Session:
        return self._life.pause(check_session_id(session_id))

    def resume(self, session_id: str) -> Session:
        return self._life.resume(check_session_id(session_id))

    def end(self, session_id: str) -> Session:
        return self._life.end(check_session_id(session_id))

    def wait(self, session_id: str, timeout: float | None = None) -> bool:
        """Block until a session recorded here has ended; True when it has."""
        return self._life.wait(session_id, timeout)

    def get(self, session_id: str) -> Session:
        return self._store.get_session(check_session_id(session_id))

    def list_sessions(
        self,
        status: SessionStatus | None = None,
        query: str | None = None,
        limit: int | None = None,
    ) -> list[SessionSummary]:
        if query is not None:
            query = check_query(query)
        return self._store.list_sessions(status, query, limit)

    def list_json(
        self, status: SessionStatus | None = None, query: str | None = None
    ) -> list[dict[str, Any]]:
        return [summary_json(s) for s in self.list_sessions(status, query)]

    def session_json(self, session_id: str) -> dict[str, Any]:
        """`sessions show --json`: the session with its attachments and their file paths."""
        session = self.get(session_id)
        return session_json(session, self._store.attachments_for(session.id), self._media)

    def update_session(
        self,
        session_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
    ) -> Session:
        """Edit a session's name, description and tags (during or after recording)."""
        name = None if name is None else check_text(name, "name", MAX_NAME, allow_empty=False)
        if description is not None:
            description = check_text(description, "description", MAX_DESCRIPTION)
        tags = None if tags is None else check_tags(tags)
        with self._store.transaction():
            session = self._store.session_for_update(check_session_id(session_id))
            if name is not None:
                session.name = name.strip()
            if description is not None:
                session.description = description
            if tags is not None:
                session.tags = tags
            self._store.update_session(session)
        return self.get(session_id)

    def failures(self, session_id: str) -> list[str]:
        """Why recorders of the session stopped early (disk full, device lost), if they did."""
        live = self._registry.find(session_id)
        return live.failures() if live is not None else self._life.failures.get(session_id, [])

    def stats(self, session_id: str) -> RecordingStats:
        """Live stats of a recording: from this process's registry, else the last ones
        another process wrote to the store."""
        live = self._registry.find(session_id)
        if live is not None:
            return live.stats()
        self.get(session_id)  # NotFound for an unknown id
        stats = self._store.read_stats(session_id)
        if stats is None:
            raise NotFound(f"no such recording: session {session_id!r} has no recording stats")
        return stats

    def on_event(self, listener: Listener) -> None:
        """Call `listener(session_id, message)` for every warning about a recording."""
        self._life.listeners.append(listener)

    # --- notes and screenshots ----------------------------------------------------------
    def add_note(
        self,
        session_id: str,
        content: str,
        *,
        type: ContextItemType = "note",
        media_offset: float | None = None,
    ) -> ContextItem:
        """A note, task or marker at `media_offset` (default: now, or the session's end)."""
        return self._life.add_context_item(
            check_session_id(session_id), type, content, media_offset
        )

    def annotate_screenshot(
        self,
        session_id: str,
        screenshot_id: str,
        *,
        comment: str | None = None,
        flagged: bool | None = None,
    ) -> None:
        self._life.annotate_screenshot(
            check_session_id(session_id), screenshot_id, comment=comment, flagged=flagged
        )

    def capture_screenshot(self, session_id: str) -> None:
        """Take a screenshot now in a session this process records."""
        self._life.capture_screenshot(session_id)

    # --- media --------------------------------------------------------------------------
    def attachment(self, attachment_id: str) -> Attachment:
        return self._store.get_attachment(attachment_id)

    def attachment_path(self, attachment: Attachment) -> Path | None:
        """The local file holding an attachment's bytes, when they are on this disk."""
        return self._media.local_path(attachment)

    # --- sources and health -------------------------------------------------------------
    @staticmethod
    def sources() -> dict[str, list[dict[str, Any]]]:
        """What can be recorded: displays, windows and audio devices (no library needed)."""
        from ..capture import get_backend

        backend = get_backend()
        try:
            displays = [asdict(d) for d in backend.displays()]
            windows = [asdict(w) for w in backend.windows()]
        finally:
            backend.close()
        return {"displays": displays, "windows": windows, "audio": _audio_devices()}

    def recover(self) -> list[str]:
        """Mark sessions whose recorder died `interrupted`, with what they wrote attached."""
        return self._recovery.recover()

    def doctor(self, deep: bool = False) -> list[str]:
        """Problems of the database and media files; empty when all is well. File sizes
        are always checked; `deep` also checks every file's contents against its hash."""
        return self._recovery.doctor(deep)


def _audio_devices() -> list[dict[str, Any]]:
    try:
        from ..capture.audio import list_audio_devices
    except ImportError:
        return []
    try:
        return [asdict(d) for d in list_audio_devices()]
    except TaskerinoError:
        return []
