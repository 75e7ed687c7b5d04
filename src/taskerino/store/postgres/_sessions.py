"""Sessions, their children and attachments in PostgreSQL (the `SessionRows` part)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import psycopg

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
from .._rows import summaries
from ..base import SessionRows, check_digest
from ._connection import PostgresBase
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
_LIKE = (
    "(s.name ILIKE %s ESCAPE '\\' OR s.description ILIKE %s ESCAPE '\\'"
    " OR s.tags ILIKE %s ESCAPE '\\')"
)


class PostgresSessionRows(PostgresBase, SessionRows):
    # --- sessions -----------------------------------------------------------------------
    def create_session(self, session: Session) -> None:
        self._write(
            "INSERT INTO sessions (id, name, description, status, start_time, end_time,"
            " paused_at, total_paused, total_duration, config, tags, enrichment,"
            " schema_version, audio_attachment_id, recycled)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
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
            "UPDATE sessions SET name=%s, description=%s, status=%s, start_time=%s,"
            " end_time=%s, paused_at=%s, total_paused=%s, total_duration=%s, config=%s,"
            " tags=%s, enrichment=%s, schema_version=%s, audio_attachment_id=%s, recycled=%s"
            " WHERE id=%s",
            (*values[1:], values[0]),
            [("attachments", session.audio_attachment_id, "attachment")],
        )
        if changed == 0:
            raise NotFound(f"no session {session.id!r}")

    def get_session(self, session_id: str) -> Session:
        with self._reading(snapshot=True) as db:
            return self._load_session(db, session_id, lock=False)

    def session_for_update(self, session_id: str) -> Session:
        # The row lock of FOR UPDATE holds until the enclosing transaction ends: every other
        # writer of the session (any process) waits for it.
        if not self._inside_transaction():
            raise StorageError("session_for_update needs an open transaction in this thread")
        with self._reading() as db:
            return self._load_session(db, session_id, lock=True)

    def _load_session(self, db: psycopg.Connection[Any], session_id: str, *, lock: bool) -> Session:
        row = db.execute(
            "SELECT id, name, description, status, start_time, end_time, paused_at,"
            " total_paused, total_duration, config, tags, enrichment, schema_version,"
            " audio_attachment_id, recycled FROM sessions WHERE id=%s"
            + (" FOR UPDATE" if lock else ""),
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
            SessionScreenshot(*r)
            for r in db.execute(
                "SELECT id, session_id, timestamp, media_offset, attachment_id, hash,"
                " user_comment, flagged, ocr_text, analysis_status FROM screenshots"
                " WHERE session_id=%s ORDER BY media_offset, timestamp",
                (session_id,),
            ).fetchall()
        ]
        session.audio_segments = [
            SessionAudioSegment(*r)
            for r in db.execute(
                "SELECT id, session_id, timestamp, media_offset, duration, attachment_id,"
                " transcription, transcription_status FROM audio_segments"
                " WHERE session_id=%s ORDER BY media_offset",
                (session_id,),
            ).fetchall()
        ]
        session.context_items = [
            ContextItem(*r)
            for r in db.execute(
                "SELECT id, session_id, timestamp, media_offset, type, content"
                " FROM context_items WHERE session_id=%s ORDER BY media_offset, timestamp",
                (session_id,),
            ).fetchall()
        ]
        session.activity = load_activity(db, session_id)
        session.transcript = load_transcript(db, session_id)
        session.ocr = load_ocr(db, session_id, words=False)
        session.video = self._load_video(db, session_id)
        return session

    def _load_video(self, db: psycopg.Connection[Any], session_id: str) -> SessionVideo | None:
        row = db.execute(
            "SELECT id, session_id, width, height, fps, sources, compositor,"
            " full_video_attachment_id, duration, chunking_status FROM videos"
            " WHERE session_id=%s",
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
                " bytes FROM video_chunks WHERE video_id=%s ORDER BY idx",
                (video.id,),
            ).fetchall()
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
            where.append("s.status = %s")
            params.append(status)
        if query:
            where.append(_LIKE)
            params += ["%" + _escape_like(query) + "%"] * 3
        sql = SUMMARY + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY s.start_time DESC, s.seq DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        with self._reading() as db:
            return summaries(db.execute(sql, params).fetchall())

    # --- children -----------------------------------------------------------------------
    def add_screenshot(self, shot: SessionScreenshot) -> None:
        self._write(
            "INSERT INTO screenshots (id, session_id, timestamp, media_offset, attachment_id,"
            " hash, user_comment, flagged, ocr_text, analysis_status)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (
                shot.id,
                shot.session_id,
                shot.timestamp,
                shot.media_offset,
                shot.attachment_id,
                shot.hash,
                shot.user_comment,
                bool(shot.flagged),
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
            "UPDATE screenshots SET user_comment=%s, flagged=%s, ocr_text=%s,"
            " analysis_status=%s WHERE id=%s",
            (shot.user_comment, bool(shot.flagged), shot.ocr_text, shot.analysis_status, shot.id),
        )
        if changed == 0:
            raise NotFound(f"no screenshot {shot.id!r}")

    def add_audio_segment(self, segment: SessionAudioSegment) -> None:
        s = segment
        self._write(
            "INSERT INTO audio_segments (id, session_id, timestamp, media_offset, duration,"
            " attachment_id, transcription, transcription_status)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
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
            " height, fps, sources, compositor, chunking_status)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
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
            " end_offset, frames, bytes) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
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
            " VALUES (%s,%s,%s,%s,%s,%s)",
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
                    " (SELECT id FROM videos WHERE session_id=%s) RETURNING attachment_id",
                    (session_id,),
                )
            elif kind == "full_video":
                # RETURNING gives the new value (NULL): the old one comes from a subquery.
                rows = self._write_returning(
                    "UPDATE videos v SET full_video_attachment_id=NULL"
                    " FROM (SELECT id, full_video_attachment_id AS old FROM videos"
                    "  WHERE session_id=%s AND full_video_attachment_id IS NOT NULL FOR UPDATE)"
                    " o WHERE v.id = o.id RETURNING o.old",
                    (session_id,),
                )
            elif kind == "screenshots":
                rows = self._write_returning(
                    "DELETE FROM screenshots WHERE session_id=%s RETURNING attachment_id",
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
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (hash) DO NOTHING",
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
                f"SELECT {_ATTACHMENT_COLUMNS} FROM attachments WHERE {where}=%s", (value,)
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
                " SELECT attachment_id FROM screenshots WHERE session_id=%(s)s"
                " UNION SELECT attachment_id FROM audio_segments WHERE session_id=%(s)s"
                " UNION SELECT full_video_attachment_id FROM videos WHERE session_id=%(s)s"
                " UNION SELECT audio_attachment_id FROM sessions WHERE id=%(s)s"
                " UNION SELECT c.attachment_id FROM video_chunks c"
                "   JOIN videos v ON v.id = c.video_id WHERE v.session_id=%(s)s"
                " UNION SELECT thumbnail_attachment_id FROM video_chapters"
                " WHERE session_id=%(s)s)",
                {"s": session_id},
            ).fetchall()
        return [Attachment(*r) for r in rows]

    def attachment_hashes(self) -> set[str]:
        with self._reading() as db:
            return {r[0] for r in db.execute("SELECT hash FROM attachments").fetchall()}

    def delete_attachment(self, attachment_id: str) -> Attachment | None:
        rows = self._write_returning(
            f"DELETE FROM attachments WHERE id=%(a)s AND {unreferenced('%(a)s')}"
            f" RETURNING {_ATTACHMENT_COLUMNS}",
            {"a": attachment_id},
        )
        return Attachment(*rows[0]) if rows else None

    # --- reading for review -------------------------------------------------------------
    _ORDER: ClassVar[dict[str, str]] = {
        # Each order ends on seq so that pages never overlap or skip.
        "newest": "s.start_time DESC, s.seq DESC",
        "oldest": "s.start_time ASC, s.seq ASC",
        "longest": "COALESCE(s.total_duration, 0) DESC, s.seq DESC",
        "shortest": "COALESCE(s.total_duration, 0) ASC, s.seq ASC",
        "name": "lower(s.name) ASC, s.seq ASC",
    }

    def find_sessions(self, filter: SessionFilter) -> SessionPage:
        where: list[str] = []
        params: list[Any] = []
        if filter.statuses:
            where.append("s.status = ANY(%s)")
            params.append(list(filter.statuses))
        if filter.query:
            where.append(_LIKE)
            params += ["%" + _escape_like(filter.query) + "%"] * 3
        if filter.since is not None:
            where.append("s.start_time >= %s")
            params.append(filter.since)
        if filter.until is not None:
            where.append("s.start_time < %s")
            params.append(filter.until)
        if filter.tag is not None:
            # The text search first (cheap: the tag as JSON writes it), then the exact test
            # on the rows it lets through (parsing every row's JSON is what costs).
            where.append("s.tags LIKE %s ESCAPE '\\' AND s.tags::jsonb ? %s")
            params += ["%" + _escape_like(json.dumps(filter.tag)) + "%", filter.tag]
        condition = " WHERE " + " AND ".join(where) if where else ""
        with self._reading(snapshot=True) as db:
            counted = db.execute(f"SELECT COUNT(*) FROM sessions s{condition}", params).fetchone()
            total = int(counted[0]) if counted else 0
            rows = db.execute(
                f"{SUMMARY}{condition} ORDER BY {self._ORDER[filter.sort]} LIMIT %s OFFSET %s",
                [*params, filter.limit, filter.offset],
            ).fetchall()
            page = summaries(rows)
            with_shots = [s.id for s in page if s.screenshot_count]
            thumbnails: dict[str, str] = {}
            if with_shots:
                thumbnails = {
                    r[0]: r[1]
                    for r in db.execute(
                        "SELECT DISTINCT ON (session_id) session_id, attachment_id"
                        " FROM screenshots WHERE session_id = ANY(%s)"
                        " ORDER BY session_id, media_offset",
                        (with_shots,),
                    ).fetchall()
                }
        return SessionPage(page, total, filter.limit, filter.offset, thumbnails)

    def session_state(self, session_id: str) -> SessionState:
        with self._reading() as db:
            row = db.execute(
                "SELECT status, start_time, paused_at, total_paused, total_duration, enrichment"
                " FROM sessions WHERE id=%s",
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
                "SELECT session_id FROM screenshots WHERE id=%s", (screenshot_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no screenshot {screenshot_id!r}")
        return str(row[0])


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
