"""`Taskerino`: the one front door of the library.

The CLI, the demo, the web app and the worker hold a `Taskerino` and nothing behind it.
It wires the store and blob store chosen by URL, the registry of this process's live
recordings, the lifecycle, steering and recovery, and checks every input from a user
against the rule book before anything happens.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from ..config import Layout, keep_private, make_private, readable_by_others, resolve_home
from ..errors import CaptureError, InvalidInput, NotFound, StorageError, TaskerinoError
from ..models import (
    Attachment,
    ContextItem,
    ContextItemType,
    Job,
    JobState,
    RecordingStats,
    SearchHit,
    Session,
    SessionPage,
    SessionScreenshot,
    SessionState,
    SessionStatus,
    SessionSummary,
)
from ..recording.live import RecordingRegistry
from ..rules import (
    MAX_DESCRIPTION,
    MAX_EXCLUSION,
    MAX_NAME,
    MAX_SEARCH_RESULTS,
    STAGE_INPUTS,
    check_exclusions,
    check_object_id,
    check_query,
    check_session_id,
    check_stages,
    check_tags,
    check_text,
    is_test_source,
    parse_bytes,
    parse_concurrency,
    parse_flag,
    parse_thumbnail_width,
    parse_whole,
    session_filter,
)
from ..store.base import BlobStore, Store
from ..store.media import MediaLibrary
from ..store.registry import open_blob_store, open_store
from ..store.watch import Topic, Watch
from .budget import MAX_STORAGE_SETTING, Budget, GcReport
from .export import Export, ExportFile, export_files, write_folder
from .lifecycle import Lifecycle, Listener, StartRequest
from .recovery import Recovery
from .steering import Steering
from .views import session_json, summary_json

if TYPE_CHECKING:
    from ..capture import CaptureBackend
    from ..enrich.worker import Worker, WorkerConfig
    from ..frame import Frame  # numpy: imported only by what handles pictures

__all__ = ["StartRequest", "Taskerino"]

log = logging.getLogger("taskerino")

EXCLUDE_SETTING = "exclude"  # exclusion patterns applied to every session (spec §12)


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
        self._budget = Budget(store, self._media)
        self._life.after_end.append(self._keep_budget)
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
        # Everything this process writes in the library is owner-only from now on.
        make_private()
        tightened = keep_private(layout.home)
        if tightened:
            log.warning(
                "made the data folder %s private: %d item(s) were readable by others, now "
                "only you can read them",
                layout.home,
                len(tightened),
            )
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
        create the session and start recording. Nothing is left behind on failure.

        The `exclude` setting's patterns apply to every session, before its own ones; the
        session records all that applied (`config.exclude`)."""
        request.tags = check_tags(request.tags)
        request.config.exclude = check_exclusions(
            [*self.exclusions(), *check_exclusions(request.config.exclude)]
        )
        return self._life.start(request)

    # --- settings -----------------------------------------------------------------------
    def exclusions(self) -> list[str]:
        """The exclusion patterns applied to every session (the `exclude` setting)."""
        return self._stored_exclusions(check=True)

    def change_exclusions(
        self, add: Iterable[object] = (), remove: Iterable[object] = ()
    ) -> list[str]:
        """Add patterns to the `exclude` setting and remove others; the list afterwards.
        A pattern to remove that is not in the list is an error, so a typo is not silent."""
        adding = check_exclusions(add)
        removing = [check_text(p, "exclude pattern", MAX_EXCLUSION) for p in remove]
        with self._store.transaction():
            current = self._stored_exclusions(check=False)
            missing = [p for p in removing if p not in current]
            if missing:
                raise InvalidInput(
                    f"{missing[0]!r} is not an exclude pattern of the settings; they are: "
                    + (", ".join(repr(p) for p in current) or "none")
                )
            kept = [p for p in current if p not in removing]
            result = check_exclusions([*kept, *adding])
            self._store.set_setting(EXCLUDE_SETTING, result)
        return result

    def _stored_exclusions(self, *, check: bool) -> list[str]:
        value = self._store.get_setting(EXCLUDE_SETTING)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise StorageError(
                f"the {EXCLUDE_SETTING!r} setting is damaged (not a list of patterns): set it "
                "again with 'taskerino settings exclude'"
            )
        if not check:
            return list(value)
        try:
            return check_exclusions(value)
        except InvalidInput as exc:
            # Nothing may be recorded while a pattern meant to hide a window is unusable.
            raise InvalidInput(
                f"the {EXCLUDE_SETTING!r} setting holds a bad pattern ({exc}); remove it with "
                "'taskerino settings exclude remove PATTERN'"
            ) from None

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

    # --- enrichment and search ---------------------------------------------------------
    def enrich(self, session_id: str, stages: Iterable[str] = ()) -> list[Job]:
        """Queue enrichment stages of an ended session again (default: all of them); a
        stage already queued or running is not queued twice."""
        wanted = check_stages(stages)
        with self._store.transaction():
            session = self._store.session_for_update(check_session_id(session_id))
            if session.status in ("active", "paused"):
                raise InvalidInput(
                    f"session {session.id} is still recording: it is enriched once it ends"
                )
            jobs = []
            for stage in wanted:
                self._store.set_stage_status(session.id, stage, "pending")
            for stage in wanted:
                # A stage waits for the asked stages it builds on: they queue it when done.
                if not any(before in wanted for before in STAGE_INPUTS.get(stage, ())):
                    jobs.append(self._store.enqueue_job(session.id, stage, now=time.time()))
        return jobs

    def jobs(self, state: JobState | None = None, session_id: str | None = None) -> list[Job]:
        """Enrichment jobs in the order they were queued."""
        if session_id is not None:
            session_id = check_session_id(session_id)
        return self._store.list_jobs(state, session_id)

    def search(
        self, text: str, *, session_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SearchHit]:
        """Hits best first: what was on the screen, said, in front, written; a malformed
        query is InvalidInput."""
        text = check_query(text)
        if session_id is not None:
            session_id = check_session_id(session_id)
        limit = parse_whole(limit, "limit", 1, MAX_SEARCH_RESULTS)
        return self._store.search(text, session_id=session_id, limit=limit, offset=offset)

    def worker(self, concurrency: int = 1, config: WorkerConfig | None = None) -> Worker:
        """A worker that runs this library's enrichment jobs with `concurrency` threads;
        call `run()` on it, and set its `stop` event to end it."""
        from ..enrich.stages import Stages, StageSettings
        from ..enrich.worker import Worker, WorkerConfig  # only the commands that run jobs

        config = config or WorkerConfig()
        config.concurrency = parse_concurrency(concurrency)
        stages = Stages(self._store, self._media, StageSettings.from_environment())
        return Worker(
            self._store,
            stages.runners(),
            stages.follow_ups,
            config,
            after_commit=stages.after_commit,
        )

    def recover(self) -> list[str]:
        """Mark sessions whose recorder died `interrupted`, with what they wrote attached;
        the storage budget is kept after them as after any session's end."""
        recovered = self._recovery.recover()
        if recovered:
            self._keep_budget(recovered[-1])
        return recovered

    def doctor(self, deep: bool = False) -> list[str]:
        """Problems of the database and media files; empty when all is well. File sizes
        are always checked; `deep` also checks every file's contents against its hash."""
        problems = self._recovery.doctor(deep)
        # The exact path in each fix: the data folder may hold files that are not ours.
        problems += [
            f"readable by others: {path} (make it private with: chmod go-rwx {shlex.quote(path)})"
            for path in readable_by_others(self.layout.home)
        ]
        return problems

    # --- storage budget and export ------------------------------------------------------
    def gc(self, max_storage: object = None, *, dry_run: bool = False) -> GcReport:
        """Free space, oldest media first, until the media take at most `max_storage`
        bytes (default: the budget set with `set_max_storage`); see `sessions.budget`."""
        if max_storage is None:
            budget = self._budget.setting()
            if budget is None:
                raise InvalidInput(
                    "no storage budget: give --max-storage BYTES (e.g. 2G), or set one with "
                    "'taskerino budget BYTES'"
                )
        else:
            budget = parse_bytes(max_storage)
        return self._budget.gc(budget, dry_run=dry_run)

    def max_storage(self) -> int | None:
        """The storage budget applied after each session ends, in bytes; None: none."""
        return self._budget.setting()

    def set_max_storage(self, max_storage: object) -> int | None:
        """Set (bytes, or text like 2G) or clear (None) the budget applied after each
        session ends; returns it in bytes."""
        budget = None if max_storage is None else parse_bytes(max_storage)
        self._store.set_setting(MAX_STORAGE_SETTING, budget)
        return budget

    def _keep_budget(self, session_id: str) -> None:
        try:
            budget = self._budget.setting()
            if budget is not None:
                report = self._budget.gc(budget)
                if report.removals:
                    log.info(
                        "storage budget %d bytes: freed %d bytes from %d session(s)",
                        budget,
                        report.before - report.after,
                        len({r.session_id for r in report.removals}),
                    )
        except TaskerinoError as exc:
            # The session has ended all the same; the next end or `gc` tries again.
            self._life.report(session_id, f"could not keep the storage budget: {exc}")

    def export_files(self, session_id: str, formats: Iterable[str] = ()) -> list[ExportFile]:
        """The files an export of the session holds (names relative to its folder), each
        written on demand; see `sessions.export`."""
        session = self.get(session_id)
        return export_files(Export(session, self.session_json(session.id), self._media), formats)

    def export(
        self, session_id: str, folder: Path, formats: Iterable[str] = (), *, force: bool = False
    ) -> list[Path]:
        """Write the session's export into `folder` (see `sessions.export`); existing files
        are refused, before anything is written, unless `force`. The paths written."""
        return write_folder(self.export_files(session_id, formats), folder, force=force)

    # --- review (the web app) -----------------------------------------------------------
    def find_sessions(
        self,
        *,
        status: object = None,
        query: object = None,
        since: object = None,
        until: object = None,
        tag: object = None,
        sort: object = None,
        limit: object = None,
        offset: object = None,
    ) -> SessionPage:
        """One page of sessions filtered by status (one or `active,paused`), text, start
        date range and tag, in the order asked (`rules.SESSION_SORTS`), with the number
        that match in all; raw values (query parameters) are checked by the rule book."""
        wanted = session_filter(
            status=status,
            query=query,
            since=since,
            until=until,
            tag=tag,
            sort=sort,
            limit=limit,
            offset=offset,
        )
        return self._store.find_sessions(wanted)

    def session_state(self, session_id: str) -> SessionState:
        """Status, pause and enrichment of a session, read cheaply (for watching it)."""
        return self._store.session_state(check_session_id(session_id))

    def watch_session(self, session_id: str) -> Watch:
        """A watch that wakes when the session's state (status, pause, enrichment) or its
        stats change, in any process: to follow a session without polling it."""
        sid = check_session_id(session_id)
        return self._store.watch([Topic.session(sid), Topic.stats(sid)])

    def watch_live(self) -> Watch:
        """A watch that wakes when a session is created or its state changes: to follow
        which sessions record now."""
        return self._store.watch([Topic.session()])

    def latest_stats(self, session_id: str) -> RecordingStats | None:
        """The stats of a recording as `stats` gives them, or None when the session has
        never written any (no NotFound: for watching a session that may not record)."""
        live = self._registry.find(check_session_id(session_id))
        return live.stats() if live is not None else self._store.read_stats(session_id)

    def update_screenshot(
        self, screenshot_id: str, *, comment: str | None = None, flagged: bool | None = None
    ) -> SessionScreenshot:
        """Comment or flag a screenshot known only by its id; returns it as stored."""
        shot_id = check_object_id(screenshot_id, "screenshot id")
        if flagged is not None:
            flagged = parse_flag(flagged, "flagged")
        session_id = self._store.screenshot_session(shot_id)
        self.annotate_screenshot(session_id, shot_id, comment=comment, flagged=flagged)
        return next(s for s in self.get(session_id).screenshots if s.id == shot_id)

    def media(self, attachment_id: str) -> tuple[Attachment, Path | None]:
        """An attachment by an id from a user, and the local file of its bytes when they
        are on this disk (else read them with `open_media`). The id never becomes a path."""
        attachment = self._store.get_attachment(check_object_id(attachment_id, "attachment id"))
        return attachment, self._media.local_path(attachment)

    def open_media(
        self, attachment: Attachment, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """The bytes of an attachment, wherever the blob store keeps them; with `start` or
        `end` (exclusive) only that range, asked of the blob store as such."""
        if start == 0 and end is None:
            return self._media.blobs.open(attachment.hash)
        stop = attachment.size if end is None else end
        return self._media.blobs.open_range(attachment.hash, start, stop)

    def disk_free(self) -> int:
        """Bytes free on the disk that live recordings write to (the data folder's)."""
        return self.layout.disk_free()

    @staticmethod
    def source_thumbnail(source_id: str, width: int = 320) -> bytes:
        """A JPEG picture, `width` pixels wide, of what a source shows now."""
        from ..capture import get_backend, open_source, validate_sources

        width = parse_thumbnail_width(width)
        text = check_text(source_id, "source id", 100, allow_empty=False)
        backends: list[CaptureBackend] = []

        def backend() -> CaptureBackend:
            backends.append(get_backend())
            return backends[-1]

        try:
            canonical = validate_sources([text], None if is_test_source(text) else backend())
            source = open_source(canonical[0], lambda: backends[0])
            try:
                frame = source.grab()
            finally:
                source.close()
        finally:
            for opened in backends:
                opened.close()
        return _jpeg(frame, width)


def _jpeg(frame: Frame, width: int) -> bytes:
    import cv2
    import numpy as np

    height, full_width = frame.shape[:2]
    size = (width, max(2, round(height * width / max(1, full_width))))
    small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR), size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise CaptureError("could not encode the source's picture as JPEG")
    return np.asarray(data).tobytes()


def _audio_devices() -> list[dict[str, Any]]:
    try:
        from ..capture.audio import list_audio_devices
    except ImportError:
        return []
    try:
        return [asdict(d) for d in list_audio_devices()]
    except TaskerinoError:
        return []
