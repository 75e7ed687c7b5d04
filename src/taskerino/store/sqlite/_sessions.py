"""Sessions, their children and attachments in SQLite (the `SessionRows` part)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, ClassVar

from ...errors import InvalidInput, NotFound, StorageError
from ...models import (
    Attachment,
    ContextItem,
    RecycledKind,
    Session,
    SessionAudioSegment,
    SessionConfig,
    SessionFilter,
    SessionPage,
    SessionScreenshot,
    SessionState,
    SessionStatus,
    SessionSummary,
    SessionVideo,
    SessionVideoChunk,
    StageStatus,
    from_dict,
)
from .._rows import json_column as _json
from .._rows import summaries as _summaries
from ..base import SessionRows, check_digest
from ._connection import SQLiteBase
from ._enrichment import load_activity, load_chapters, load_ocr, load_transcript, unreferenced

SUMMARY = """
SELECT s.id, s.name, s.status, s.start_time, s.end_time, s.total_duration,
  s.screenshot_count, s.audio_segment_count, s.has_video, s.description, s.tags
FROM sessions s
"""

_SESSION_FIELDS = (
    "id",
    "name",
    "description",
    "status",
    "start_time",
    "end_time",
    "paused_at",
    "total_paused",
    "total_duration",
)

_ATTACHMENT_COLUMNS = "id, type, name, mime_type, size, hash, created_at, duration, width, height"


class SQLiteSessionRows(SQLiteBase, SessionRows):
    # --- sessions -----------------------------------------------------------------------
    def create_session(self, session: Session) -> None:
        self._write(
            "INSERT INTO sessions (id, name, description, status, start_time, end_time,"
            " paused_at, total_paused, total_duration, config, tags, enrichment,"
            " schema_version, audio_attachment_id, recycled)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            self._session_values(session),
            [("attachments", session.audio_attachment_id, "attachment")],
        )

    @staticmethod
    def _session_values(s: Session) -> tuple[Any, ...]:
        return (
            s.id,
            s.name,
            s.description,
            s.status,
            s.start_time,
            s.end_time,
            s.paused_at,
            s.total_paused,
            s.total_duration,
            json.dumps(vars(s.config)),
            json.dumps(s.tags),
            json.dumps({stage: vars(status) for stage, status in s.enrichment.items()}),
            s.schema_version,
            s.audio_attachment_id,
            json.dumps([vars(r) for r in s.recycled]),
        )

    def update_session(self, session: Session) -> None:
        values = self._session_values(session)
        changed = self._write(
            "UPDATE sessions SET name=?, description=?, status=?, start_time=?, end_time=?,"
            " paused_at=?, total_paused=?, total_duration=?, config=?, tags=?, enrichment=?,"
            " schema_version=?, audio_attachment_id=?, recycled=? WHERE id=?",
            (*values[1:], values[0]),
            [("attachments", session.audio_attachment_id, "attachment")],
        )
        if changed == 0:
            raise NotFound(f"no session {session.id!r}")

    def get_session(self, session_id: str) -> Session:
        with self._reading() as db:
            return self._load_session(db, session_id)

    def session_for_update(self, session_id: str) -> Session:
        # BEGIN IMMEDIATE of the enclosing transaction already holds the database's write
        # lock, so nobody else can change the session until it ends.
        if not self._inside_transaction():
            raise StorageError("session_for_update needs an open transaction in this thread")
        with self._reading() as db:
            return self._load_session(db, session_id)

    def _load_session(self, db: sqlite3.Connection, session_id: str) -> Session:
        row = db.execute(
            "SELECT id, name, description, status, start_time, end_time, paused_at,"
            " total_paused, total_duration, config, tags, enrichment, schema_version,"
            " audio_attachment_id, recycled FROM sessions WHERE id=?",
            (session_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        data: dict[str, Any] = dict(zip(_SESSION_FIELDS, row[:9], strict=True))
        config = _json(row[9], dict)
        data["tags"] = _json(row[10], list)
        data["enrichment"] = _json(row[11], dict)
        data["schema_version"] = row[12]
        data["audio_attachment_id"] = row[13]
        data["recycled"] = _json(row[14], list)
        session = from_dict(Session, data)
        session.config = from_dict(SessionConfig, config)
        session.screenshots = [
            SessionScreenshot(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])
            for r in db.execute(
                "SELECT id, session_id, timestamp, media_offset, attachment_id, hash,"
                " user_comment, flagged, ocr_text, analysis_status FROM screenshots"
                " WHERE session_id=? ORDER BY media_offset, timestamp",
                (session_id,),
            )
        ]
        session.audio_segments = [
            SessionAudioSegment(*r)
            for r in db.execute(
                "SELECT id, session_id, timestamp, media_offset, duration, attachment_id,"
                " transcription, transcription_status FROM audio_segments"
                " WHERE session_id=? ORDER BY media_offset",
                (session_id,),
            )
        ]
        session.context_items = [
            ContextItem(*r)
            for r in db.execute(
                "SELECT id, session_id, timestamp, media_offset, type, content"
                " FROM context_items WHERE session_id=? ORDER BY media_offset, timestamp",
                (session_id,),
            )
        ]
        session.activity = load_activity(db, session_id)
        session.transcript = load_transcript(db, session_id)
        session.ocr = load_ocr(db, session_id, words=False)
        session.video = self._load_video(db, session_id)
        return session

    def _load_video(self, db: sqlite3.Connection, session_id: str) -> SessionVideo | None:
        row = db.execute(
            "SELECT id, session_id, width, height, fps, sources, compositor,"
            " full_video_attachment_id, duration, chunking_status FROM videos"
            " WHERE session_id=?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        video = SessionVideo(
            id=row[0],
            session_id=row[1],
            width=row[2],
            height=row[3],
            fps=row[4],
            sources=_json(row[5], list),
            compositor=row[6],
            full_video_attachment_id=row[7],
            duration=row[8],
            chunking_status=row[9],
        )
        video.chunks = [
            SessionVideoChunk(*r)
            for r in db.execute(
                "SELECT id, video_id, attachment_id, idx, start_offset, end_offset, frames,"
                " bytes FROM video_chunks WHERE video_id=? ORDER BY idx",
                (video.id,),
            )
        ]
        video.chapters = load_chapters(db, session_id)
        return video

    def list_sessions(
        self,
        status: SessionStatus | None = None,
        query: str | None = None,
        limit: int | None = None,
    ) -> list[SessionSummary]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("s.status = ?")
            params.append(status)
        if query:
            where.append(
                "(s.name LIKE ? ESCAPE '\\' OR s.description LIKE ? ESCAPE '\\'"
                " OR s.tags LIKE ? ESCAPE '\\')"
            )
            like = "%" + _escape_like(query)
            params += [like + "%"] * 3
        sql = SUMMARY + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY s.start_time DESC, s.rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._reading() as db:
            return _summaries(db.execute(sql, params).fetchall())

    # --- children -----------------------------------------------------------------------
    def add_screenshot(self, shot: SessionScreenshot) -> None:
        self._write(
            "INSERT INTO screenshots (id, session_id, timestamp, media_offset, attachment_id,"
            " hash, user_comment, flagged, ocr_text, analysis_status)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                shot.id,
                shot.session_id,
                shot.timestamp,
                shot.media_offset,
                shot.attachment_id,
                shot.hash,
                shot.user_comment,
                int(shot.flagged),
                shot.ocr_text,
                shot.analysis_status,
            ),
            [
                ("sessions", shot.session_id, "session"),
                ("attachments", shot.attachment_id, "attachment"),
            ],
        )

    def update_screenshot(self, shot: SessionScreenshot) -> None:
        changed = self._write(
            "UPDATE screenshots SET user_comment=?, flagged=?, ocr_text=?, analysis_status=?"
            " WHERE id=?",
            (shot.user_comment, int(shot.flagged), shot.ocr_text, shot.analysis_status, shot.id),
        )
        if changed == 0:
            raise NotFound(f"no screenshot {shot.id!r}")

    def add_audio_segment(self, segment: SessionAudioSegment) -> None:
        s = segment
        self._write(
            "INSERT INTO audio_segments (id, session_id, timestamp, media_offset, duration,"
            " attachment_id, transcription, transcription_status) VALUES (?,?,?,?,?,?,?,?)",
            (
                s.id,
                s.session_id,
                s.timestamp,
                s.media_offset,
                s.duration,
                s.attachment_id,
                s.transcription,
                s.transcription_status,
            ),
            [("sessions", s.session_id, "session"), ("attachments", s.attachment_id, "attachment")],
        )

    def save_video(self, video: SessionVideo) -> None:
        v = video
        self._write(
            "INSERT INTO videos (id, session_id, full_video_attachment_id, duration, width,"
            " height, fps, sources, compositor, chunking_status) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET full_video_attachment_id=excluded."
            "full_video_attachment_id, duration=excluded.duration,"
            " chunking_status=excluded.chunking_status",
            (
                v.id,
                v.session_id,
                v.full_video_attachment_id,
                v.duration,
                v.width,
                v.height,
                v.fps,
                json.dumps(v.sources),
                v.compositor,
                v.chunking_status,
            ),
            [
                ("sessions", v.session_id, "session"),
                ("attachments", v.full_video_attachment_id, "attachment"),
            ],
        )

    def add_video_chunk(self, chunk: SessionVideoChunk) -> None:
        c = chunk
        self._write(
            "INSERT INTO video_chunks (id, video_id, attachment_id, idx, start_offset,"
            " end_offset, frames, bytes) VALUES (?,?,?,?,?,?,?,?)",
            (
                c.id,
                c.video_id,
                c.attachment_id,
                c.index,
                c.start_offset,
                c.end_offset,
                c.frames,
                c.bytes,
            ),
            [("videos", c.video_id, "video"), ("attachments", c.attachment_id, "attachment")],
        )

    def add_context_item(self, item: ContextItem) -> None:
        i = item
        self._write(
            "INSERT INTO context_items (id, session_id, timestamp, media_offset, type, content)"
            " VALUES (?,?,?,?,?,?)",
            (i.id, i.session_id, i.timestamp, i.media_offset, i.type, i.content),
            [("sessions", i.session_id, "session")],
        )

    def remove_media(self, session_id: str, kind: RecycledKind) -> list[str]:
        with self.transaction():
            if not self._row_exists("sessions", session_id):
                raise NotFound(f"no session {session_id!r}")
            if kind == "video_chunks":
                rows = self._write_returning(
                    "DELETE FROM video_chunks WHERE video_id IN"
                    " (SELECT id FROM videos WHERE session_id=?) RETURNING attachment_id",
                    (session_id,),
                )
            elif kind == "full_video":
                # RETURNING gives the new value (NULL): read the old one first.
                rows = self._write_returning(
                    "SELECT full_video_attachment_id FROM videos"
                    " WHERE session_id=? AND full_video_attachment_id IS NOT NULL",
                    (session_id,),
                )
                self._write(
                    "UPDATE videos SET full_video_attachment_id=NULL WHERE session_id=?",
                    (session_id,),
                )
            elif kind == "screenshots":
                rows = self._write_returning(
                    "DELETE FROM screenshots WHERE session_id=? RETURNING attachment_id",
                    (session_id,),
                )
            else:
                raise InvalidInput(f"cannot remove media of kind {kind!r}")
        return list(dict.fromkeys(r[0] for r in rows))

    # --- attachments --------------------------------------------------------------------
    def add_attachment(self, attachment: Attachment) -> Attachment:
        a = attachment
        check_digest(a.hash)
        with self.transaction():
            self._write(
                f"INSERT INTO attachments ({_ATTACHMENT_COLUMNS})"
                " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (hash) DO NOTHING",
                (
                    a.id,
                    a.type,
                    a.name,
                    a.mime_type,
                    a.size,
                    a.hash,
                    a.created_at,
                    a.duration,
                    a.width,
                    a.height,
                ),
            )
            existing = self.attachment_by_hash(a.hash)
        if existing is None:
            raise StorageError(f"the attachment with hash {a.hash} vanished while being added")
        return existing

    def _attachment(self, where: str, value: str) -> Attachment | None:
        with self._reading() as db:
            row = db.execute(
                f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE {where}=?", (value,)
            ).fetchone()
        return Attachment(*row) if row else None

    def get_attachment(self, attachment_id: str) -> Attachment:
        found = self._attachment("id", attachment_id)
        if found is None:
            raise NotFound(f"no attachment {attachment_id!r}")
        return found

    def attachment_by_hash(self, digest: str) -> Attachment | None:
        return self._attachment("hash", digest)

    def attachments_for(self, session_id: str) -> list[Attachment]:
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE id IN ("
                " SELECT attachment_id FROM screenshots WHERE session_id=:s"
                " UNION SELECT attachment_id FROM audio_segments WHERE session_id=:s"
                " UNION SELECT full_video_attachment_id FROM videos WHERE session_id=:s"
                " UNION SELECT audio_attachment_id FROM sessions WHERE id=:s"
                " UNION SELECT c.attachment_id FROM video_chunks c"
                "   JOIN videos v ON v.id = c.video_id WHERE v.session_id=:s"
                " UNION SELECT thumbnail_attachment_id FROM video_chapters WHERE session_id=:s)",
                {"s": session_id},
            ).fetchall()
        return [Attachment(*r) for r in rows]

    def attachment_hashes(self) -> set[str]:
        with self._reading() as db:
            return {r[0] for r in db.execute("SELECT hash FROM attachments")}

    def delete_attachment(self, attachment_id: str) -> Attachment | None:
        rows = self._write_returning(
            f"DELETE FROM attachments WHERE id=?1 AND {unreferenced('?1')}"
            f" RETURNING {_ATTACHMENT_COLUMNS}",
            (attachment_id,),
        )
        return Attachment(*rows[0]) if rows else None

    # --- reading for review -------------------------------------------------------------
    _ORDER: ClassVar[dict[str, str]] = {
        # Each order ends on rowid so that pages never overlap or skip.
        "newest": "s.start_time DESC, s.rowid DESC",
        "oldest": "s.start_time ASC, s.rowid ASC",
        "longest": "COALESCE(s.total_duration, 0) DESC, s.rowid DESC",
        "shortest": "COALESCE(s.total_duration, 0) ASC, s.rowid ASC",
        "name": "s.name COLLATE NOCASE ASC, s.rowid ASC",
    }

    def find_sessions(self, filter: SessionFilter) -> SessionPage:
        where: list[str] = []
        params: list[Any] = []
        if filter.statuses:
            where.append(f"s.status IN ({','.join('?' * len(filter.statuses))})")
            params += filter.statuses
        if filter.query:
            like = "%" + _escape_like(filter.query) + "%"
            where.append(
                "(s.name LIKE ? ESCAPE '\\' OR s.description LIKE ? ESCAPE '\\'"
                " OR s.tags LIKE ? ESCAPE '\\')"
            )
            params += [like] * 3
        if filter.since is not None:
            where.append("s.start_time >= ?")
            params.append(filter.since)
        if filter.until is not None:
            where.append("s.start_time < ?")
            params.append(filter.until)
        if filter.tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(s.tags) t WHERE t.value = ?)")
            params.append(filter.tag)
        condition = " WHERE " + " AND ".join(where) if where else ""
        with self._reading() as db:
            total = db.execute(f"SELECT COUNT(*) FROM sessions s{condition}", params).fetchone()[0]
            rows = db.execute(
                f"{SUMMARY}{condition} ORDER BY {self._ORDER[filter.sort]} LIMIT ? OFFSET ?",
                [*params, filter.limit, filter.offset],
            ).fetchall()
            page = _summaries(rows)
            thumbnails: dict[str, str] = {}
            for summary in page:
                if summary.screenshot_count:
                    first = db.execute(
                        "SELECT attachment_id FROM screenshots WHERE session_id=?"
                        " ORDER BY media_offset LIMIT 1",
                        (summary.id,),
                    ).fetchone()
                    if first is not None:
                        thumbnails[summary.id] = first[0]
        return SessionPage(page, total, filter.limit, filter.offset, thumbnails)

    def session_state(self, session_id: str) -> SessionState:
        with self._reading() as db:
            row = db.execute(
                "SELECT status, start_time, paused_at, total_paused, total_duration, enrichment"
                " FROM sessions WHERE id=?",
                (session_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no session {session_id!r}")
            enrichment = _json(row[5], dict)
        stages = {stage: from_dict(StageStatus, value) for stage, value in enrichment.items()}
        return SessionState(session_id, row[0], row[1], row[2], row[3], row[4], stages)

    def screenshot_session(self, screenshot_id: str) -> str:
        with self._reading() as db:
            row = db.execute(
                "SELECT session_id FROM screenshots WHERE id=?", (screenshot_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no screenshot {screenshot_id!r}")
        return str(row[0])


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
