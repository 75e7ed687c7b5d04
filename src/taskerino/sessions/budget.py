"""The storage budget: free space, oldest media first, when the library holds more than a
given number of bytes (`taskerino gc`, and after each session ends when set).

What goes, in this order, each step over the sessions oldest first: the video chunks of
sessions whose full video exists (the full video plays the same frames), then full
videos, then the screenshots of the oldest sessions. Never a live session's media, never
notes, transcripts, OCR text, chapters or their thumbnails, nor the joined audio.

Each step is one session's media of one kind: its rows, the attachment rows and the blob
intents go in one transaction with the `RecycledMedia` record on the session; the blobs
are deleted after it commits (`MediaLibrary.release`/`drop`), so a `kill -9` at any moment
leaves no row without its file and no file that recovery would not delete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..models import (
    LIVE_STATUSES,
    Attachment,
    RecycledKind,
    RecycledMedia,
    Session,
    SessionSummary,
)
from ..rules import parse_bytes
from ..store.base import Store
from ..store.media import MediaLibrary

log = logging.getLogger("taskerino.budget")

# The Settings key of the budget applied after each session ends (bytes; absent: none).
MAX_STORAGE_SETTING = "max_storage"
ORDER: tuple[RecycledKind, ...] = ("video_chunks", "full_video", "screenshots")
# How people are told what was removed (CLI, page, exported summary).
RECYCLED_NAMES: dict[str, str] = {
    "video_chunks": "video chunk(s)",
    "full_video": "full video(s)",
    "screenshots": "screenshot(s)",
}


@dataclass
class Removal:
    """One step of a gc: one session's media of one kind."""

    session_id: str
    session_name: str
    start_time: str
    kind: RecycledKind
    count: int
    bytes: int


@dataclass
class GcReport:
    """What a gc found and did. `before`/`after` are the bytes of media the library holds
    (every attachment once); with `dry_run` nothing was removed and `after` is what would
    remain."""

    max_storage: int
    before: int
    after: int
    dry_run: bool
    removals: list[Removal] = field(default_factory=list)

    @property
    def within_budget(self) -> bool:
        return self.after <= self.max_storage


def candidates(session: Session, kind: RecycledKind, attachments: dict[str, Attachment]) -> int:
    """How many files of `kind` the session would lose now (0: nothing to remove)."""
    if session.status in LIVE_STATUSES:
        return 0
    video = session.video
    if kind == "video_chunks":
        if video is None or video.full_video_attachment_id not in attachments:
            return 0
        return len(video.chunks)
    if kind == "full_video":
        return 1 if video is not None and video.full_video_attachment_id in attachments else 0
    return len(session.screenshots)


def _ids(session: Session, kind: RecycledKind) -> set[str]:
    video = session.video
    if kind == "video_chunks":
        return {c.attachment_id for c in video.chunks} if video else set()
    if kind == "full_video":
        full = video.full_video_attachment_id if video else None
        return {full} if full else set()
    return {s.attachment_id for s in session.screenshots}


def _references(sessions: list[Session]) -> dict[str, set[tuple[str, str]]]:
    """Attachment id -> the (session, kind) rows that reference it; what gc never removes
    (audio, chapter thumbnails) as kind `keep`. Content is deduplicated: one attachment
    may be held by several rows and sessions, and is freed when the last one goes."""
    refs: dict[str, set[tuple[str, str]]] = {}
    for session in sessions:
        for kind in ORDER:
            for attachment_id in _ids(session, kind):
                refs.setdefault(attachment_id, set()).add((session.id, kind))
        kept: list[str | None] = [session.audio_attachment_id]
        kept += [a.attachment_id for a in session.audio_segments]
        if session.video is not None:
            kept += [c.thumbnail_attachment_id for c in session.video.chapters]
        for kept_id in kept:
            if kept_id is not None:
                refs.setdefault(kept_id, set()).add((session.id, "keep"))
    return refs


class Budget:
    def __init__(self, store: Store, media: MediaLibrary) -> None:
        self.store = store
        self.media = media

    def setting(self) -> int | None:
        value = self.store.get_setting(MAX_STORAGE_SETTING)
        return None if value is None else parse_bytes(value)

    def usage(self) -> tuple[int, list[tuple[SessionSummary, dict[str, Attachment]]]]:
        """The bytes of media held (each attachment once) and every session, oldest first,
        with its attachments by id (one small query a session: sessions themselves are
        loaded only when gc gets to them)."""
        seen: dict[str, int] = {}
        sessions = []
        for summary in reversed(self.store.list_sessions()):
            attachments = {a.id: a for a in self.store.attachments_for(summary.id)}
            for a in attachments.values():
                seen[a.hash] = a.size
            sessions.append((summary, attachments))
        return sum(seen.values()), sessions

    def gc(self, max_storage: int, *, dry_run: bool = False) -> GcReport:
        total, sessions = self.usage()
        report = GcReport(max_storage, total, total, dry_run)
        loaded: dict[str, Session] = {}

        def load(summary: SessionSummary) -> Session:
            if summary.id not in loaded:
                loaded[summary.id] = self.store.get_session(summary.id)
            return loaded[summary.id]

        # The dry run frees an attachment once nothing holds it any more: it needs to know
        # what holds each one, in every session.
        refs = _references([load(s) for s, _ in sessions]) if dry_run else {}
        for kind in ORDER:
            for summary, attachments in sessions:
                if report.after <= max_storage:
                    return report
                if summary.status in LIVE_STATUSES or not attachments:
                    continue
                session = load(summary)
                count = candidates(session, kind, attachments)
                if not count:
                    continue
                if dry_run:
                    size = 0
                    for attachment_id in _ids(session, kind):
                        held = refs.get(attachment_id, set())
                        held.discard((session.id, kind))
                        if not held and attachment_id in attachments:
                            size += attachments[attachment_id].size
                else:
                    done = self.recycle(session.id, kind)
                    if done is None:
                        continue
                    count, size = done.count, done.bytes
                report.after -= size
                report.removals.append(
                    Removal(session.id, session.name, session.start_time, kind, count, size)
                )
        return report

    def recycle(self, session_id: str, kind: RecycledKind) -> RecycledMedia | None:
        """Remove one kind of a session's media (see the module); None when the session
        is live now or has nothing of that kind left."""
        with self.store.transaction():
            session = self.store.session_for_update(session_id)
            attachments = {a.id: a for a in self.store.attachments_for(session_id)}
            count = candidates(session, kind, attachments)
            if not count:
                return None
            ids = self.store.remove_media(session_id, kind)
            released = self.media.release(ids)
            record = RecycledMedia(kind, count, sum(a.size for a in released))
            session.recycled.append(record)
            self.store.update_session(session)
        self.media.drop(released)
        log.info(
            "session %s: removed %d %s file(s), %d bytes", session_id, count, kind, record.bytes
        )
        return record
