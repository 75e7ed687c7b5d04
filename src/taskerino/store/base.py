"""The storage contract. Every back end (SQLite, PostgreSQL; folder, S3) implements it whole.

Rules every implementation keeps:
- Each write method is atomic on its own; `transaction()` groups several into one
  all-or-nothing change, nests (savepoints) and rolls back on any exception.
- Inside `transaction()`, what `session_for_update` read cannot change underneath the
  caller until the transaction ends, also from another process: read-modify-write of a
  session happens there, never as load-then-save.
- Readers never see a half-written change.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import NotFound
from ..models import (
    Attachment,
    ContextItem,
    RecordingStats,
    Session,
    SessionAudioSegment,
    SessionFilter,
    SessionPage,
    SessionScreenshot,
    SessionState,
    SessionStatus,
    SessionSummary,
    SessionVideo,
    SessionVideoChunk,
)
from ..process import ProcessOwner


@dataclass(frozen=True)
class LiveSession:
    """A session marked active or paused, with the process that records it."""

    id: str
    status: SessionStatus
    owner: ProcessOwner | None
    heartbeat: float | None  # unix time of the recorder's last sign of life


@dataclass(frozen=True)
class BlobIntent:
    """A blob write in flight: its bytes may be in place before its attachment row commits."""

    hash: str
    owner: ProcessOwner


class Store(abc.ABC):
    """Session metadata: sessions and their children, attachments, settings, live state."""

    # --- transactions -------------------------------------------------------------------
    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """All-or-nothing block; nests with savepoints; rolls back on any exception."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; safe to call twice."""

    # --- sessions -----------------------------------------------------------------------
    @abc.abstractmethod
    def create_session(self, session: Session) -> None:
        """Insert a new session row (children are added with their own methods)."""

    @abc.abstractmethod
    def get_session(self, session_id: str) -> Session:
        """The whole session with its children, read consistently. NotFound if absent."""

    @abc.abstractmethod
    def session_for_update(self, session_id: str) -> Session:
        """Like get_session, locking the session for the enclosing transaction."""

    @abc.abstractmethod
    def update_session(self, session: Session) -> None:
        """Write the session's own fields (status, times, config, tags, enrichment)."""

    @abc.abstractmethod
    def list_sessions(
        self,
        status: SessionStatus | None = None,
        query: str | None = None,
        limit: int | None = None,
    ) -> list[SessionSummary]:
        """Newest first; `query` matches name, description and tags (case-insensitive)."""

    @abc.abstractmethod
    def live_sessions(self) -> list[LiveSession]:
        """Sessions whose status is active or paused."""

    @abc.abstractmethod
    def set_recorder(self, session_id: str, owner: ProcessOwner | None) -> None:
        """Record which process records the session (None: nobody)."""

    @abc.abstractmethod
    def heartbeat(self, session_id: str, at: float) -> None:
        """The recorder is alive at unix time `at`."""

    # --- children -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_screenshot(self, shot: SessionScreenshot) -> None: ...

    @abc.abstractmethod
    def update_screenshot(self, shot: SessionScreenshot) -> None:
        """Write `user_comment`, `flagged`, `ocr_text`, `analysis_status`."""

    @abc.abstractmethod
    def add_audio_segment(self, segment: SessionAudioSegment) -> None: ...

    @abc.abstractmethod
    def save_video(self, video: SessionVideo) -> None:
        """Insert or update the session's video row (not its chunks or chapters)."""

    @abc.abstractmethod
    def add_video_chunk(self, chunk: SessionVideoChunk) -> None: ...

    @abc.abstractmethod
    def add_context_item(self, item: ContextItem) -> None: ...

    # --- attachments --------------------------------------------------------------------
    @abc.abstractmethod
    def add_attachment(self, attachment: Attachment) -> Attachment:
        """Insert; when one with the same hash exists, return that one instead."""

    @abc.abstractmethod
    def get_attachment(self, attachment_id: str) -> Attachment:
        """NotFound if absent."""

    @abc.abstractmethod
    def attachment_by_hash(self, digest: str) -> Attachment | None: ...

    @abc.abstractmethod
    def attachments_for(self, session_id: str) -> list[Attachment]:
        """Every attachment a session references (screenshots, audio, video, chunks)."""

    @abc.abstractmethod
    def attachment_hashes(self) -> set[str]:
        """The hashes of all attachment rows."""

    @abc.abstractmethod
    def delete_attachment(self, attachment_id: str) -> None: ...

    @abc.abstractmethod
    def add_blob_intent(self, intent: BlobIntent) -> None: ...

    @abc.abstractmethod
    def remove_blob_intent(self, digest: str, owner: ProcessOwner) -> None: ...

    @abc.abstractmethod
    def blob_intents(self) -> list[BlobIntent]: ...

    # --- live state between processes ---------------------------------------------------
    @abc.abstractmethod
    def write_stats(self, stats: RecordingStats) -> None: ...

    @abc.abstractmethod
    def read_stats(self, session_id: str) -> RecordingStats | None: ...

    @abc.abstractmethod
    def push_command(self, session_id: str, command: str) -> None:
        """Ask the recorder of a session (maybe in another process) to pause/resume/end."""

    @abc.abstractmethod
    def take_commands(self, session_id: str) -> list[str]:
        """Pop the pending commands for a session, oldest first."""

    # --- settings and health ------------------------------------------------------------
    @abc.abstractmethod
    def get_setting(self, key: str) -> object | None: ...

    @abc.abstractmethod
    def set_setting(self, key: str, value: object) -> None: ...

    @abc.abstractmethod
    def integrity_problems(self) -> list[str]:
        """Database-level problems (corruption, broken references); empty when healthy."""

    # --- reading for review (a default from the methods above; back ends do it faster) ---
    def find_sessions(self, filter: SessionFilter) -> SessionPage:
        """One page of the sessions that match `filter`, in its order, with the number that
        match in all and the first screenshot of each session on the page."""
        rows = [
            s
            for s in self.list_sessions()
            if (not filter.statuses or s.status in filter.statuses)
            and (filter.query is None or _matches(s, filter.query))
            and (filter.since is None or s.start_time >= filter.since)
            and (filter.until is None or s.start_time < filter.until)
            and (filter.tag is None or filter.tag in s.tags)
        ]
        if filter.sort == "oldest":
            rows.reverse()
        elif filter.sort in ("longest", "shortest"):
            rows.sort(key=lambda s: s.total_duration or 0.0, reverse=filter.sort == "longest")
        elif filter.sort == "name":
            rows.sort(key=lambda s: s.name.casefold())
        page = rows[filter.offset : filter.offset + filter.limit]
        thumbnails = {}
        for summary in page:
            if summary.screenshot_count:
                shots = self.get_session(summary.id).screenshots
                if shots:
                    thumbnails[summary.id] = shots[0].attachment_id
        return SessionPage(page, len(rows), filter.limit, filter.offset, thumbnails)

    def session_state(self, session_id: str) -> SessionState:
        """The changing fields of one session, without its children. NotFound if absent."""
        s = self.get_session(session_id)
        return SessionState(
            s.id,
            s.status,
            s.start_time,
            s.paused_at,
            s.total_paused,
            s.total_duration,
            s.enrichment,
        )

    def screenshot_session(self, screenshot_id: str) -> str:
        """The id of the session a screenshot belongs to. NotFound if there is none."""
        for summary in self.list_sessions():
            if summary.screenshot_count and any(
                shot.id == screenshot_id for shot in self.get_session(summary.id).screenshots
            ):
                return summary.id
        raise NotFound(f"no screenshot {screenshot_id!r}")


def _matches(summary: SessionSummary, query: str) -> bool:
    text = query.casefold()
    return any(
        text in field.casefold() for field in (summary.name, summary.description, *summary.tags)
    )


class BlobStore(abc.ABC):
    """Media bytes addressed by their SHA-256. Names from users never become paths."""

    @abc.abstractmethod
    def put_file(self, source: Path, digest: str, *, move: bool = False) -> int:
        """Store the file's bytes under `digest` (temp name, fsync, rename); return the size.

        With `move` the source may be consumed (renamed into place when on the same disk),
        else it is left as it is. An existing blob with the same digest is kept.
        """

    @abc.abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abc.abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """Read the bytes; NotFound if absent."""

    @abc.abstractmethod
    def local_path(self, digest: str) -> Path | None:
        """The file holding the bytes when they are on this machine's disk, else None."""

    @abc.abstractmethod
    def delete(self, digest: str) -> None:
        """Remove the blob; absent is fine."""

    @abc.abstractmethod
    def digests(self) -> Iterator[str]:
        """Every stored digest."""

    @abc.abstractmethod
    def remove_stale_temp(self) -> list[str]:
        """Delete temporary files left by dead writers; return what was removed."""
