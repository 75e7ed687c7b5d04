"""The embedded store: one SQLite database in WAL mode.

One connection per process does all the work, guarded by a lock: SQLite allows one writer
at a time anyway, and `BEGIN IMMEDIATE` makes every transaction take the write lock up
front, so a read-modify-write inside `transaction()` is serialised against other processes
too. Reads outside a transaction run in a deferred transaction so that a session and its
children come from one snapshot.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import NotFound, StorageError
from ..models import (
    Attachment,
    ContextItem,
    RecordingStats,
    Session,
    SessionAudioSegment,
    SessionConfig,
    SessionScreenshot,
    SessionStatus,
    SessionSummary,
    SessionVideo,
    SessionVideoChunk,
    VideoChapter,
    from_dict,
    to_dict,
)
from ..process import ProcessOwner
from .base import BlobIntent, LiveSession, Store

DB_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT,
    paused_at TEXT,
    total_paused REAL NOT NULL DEFAULT 0,
    total_duration REAL,
    config TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    enrichment TEXT NOT NULL DEFAULT '{}',
    schema_version INTEGER NOT NULL,
    recorder TEXT,
    heartbeat REAL,
    audio_attachment_id TEXT REFERENCES attachments(id),
    -- Kept by the triggers below, so that listing sessions counts nothing.
    screenshot_count INTEGER NOT NULL DEFAULT 0,
    audio_segment_count INTEGER NOT NULL DEFAULT 0,
    has_video INTEGER NOT NULL DEFAULT 0
);
-- Ascending on purpose: read backwards it yields `start_time DESC, rowid DESC`, the order of
-- list_sessions, with no sort.
CREATE INDEX IF NOT EXISTS sessions_by_start_time ON sessions (start_time);
CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status);
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    duration REAL,
    width INTEGER,
    height INTEGER
);
CREATE TABLE IF NOT EXISTS screenshots (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset REAL NOT NULL,
    attachment_id TEXT NOT NULL REFERENCES attachments(id),
    hash TEXT NOT NULL,
    user_comment TEXT,
    flagged INTEGER NOT NULL DEFAULT 0,
    ocr_text TEXT,
    analysis_status TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX IF NOT EXISTS screenshots_by_session ON screenshots (session_id, media_offset);
CREATE TABLE IF NOT EXISTS audio_segments (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset REAL NOT NULL,
    duration REAL NOT NULL,
    attachment_id TEXT NOT NULL REFERENCES attachments(id),
    transcription TEXT,
    transcription_status TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX IF NOT EXISTS audio_by_session ON audio_segments (session_id, media_offset);
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    full_video_attachment_id TEXT REFERENCES attachments(id),
    duration REAL NOT NULL DEFAULT 0,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    fps INTEGER NOT NULL,
    sources TEXT NOT NULL,
    compositor TEXT NOT NULL,
    chunking_status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS video_chunks (
    id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    attachment_id TEXT NOT NULL REFERENCES attachments(id),
    idx INTEGER NOT NULL,
    start_offset REAL NOT NULL,
    end_offset REAL NOT NULL,
    frames INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    UNIQUE (video_id, idx)
);
CREATE TABLE IF NOT EXISTS chapters (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS context_items (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset REAL NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS context_by_session ON context_items (session_id, media_offset);
CREATE TRIGGER IF NOT EXISTS screenshots_counted AFTER INSERT ON screenshots BEGIN
    UPDATE sessions SET screenshot_count = screenshot_count + 1 WHERE id = new.session_id;
END;
CREATE TRIGGER IF NOT EXISTS screenshots_uncounted AFTER DELETE ON screenshots BEGIN
    UPDATE sessions SET screenshot_count = screenshot_count - 1 WHERE id = old.session_id;
END;
CREATE TRIGGER IF NOT EXISTS audio_counted AFTER INSERT ON audio_segments BEGIN
    UPDATE sessions SET audio_segment_count = audio_segment_count + 1 WHERE id = new.session_id;
END;
CREATE TRIGGER IF NOT EXISTS audio_uncounted AFTER DELETE ON audio_segments BEGIN
    UPDATE sessions SET audio_segment_count = audio_segment_count - 1 WHERE id = old.session_id;
END;
CREATE TRIGGER IF NOT EXISTS video_counted AFTER INSERT ON videos BEGIN
    UPDATE sessions SET has_video = 1 WHERE id = new.session_id;
END;
CREATE TRIGGER IF NOT EXISTS video_uncounted AFTER DELETE ON videos BEGIN
    UPDATE sessions SET has_video = 0 WHERE id = old.session_id;
END;
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recording_stats (session_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    command TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_intents (
    hash TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (hash, owner)
);
"""

_SUMMARY = """
SELECT s.id, s.name, s.status, s.start_time, s.end_time, s.total_duration,
  s.screenshot_count, s.audio_segment_count, s.has_video, s.description, s.tags
FROM sessions s
"""


class SQLiteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists() and path.stat().st_size > 0:
            with path.open("rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    raise StorageError(
                        f"{path} is not a Taskerino database (corrupt or another file); "
                        "it was left untouched"
                    )
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._prepare()
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"cannot open database {path}: {exc} (the file was left untouched)"
            ) from exc
        self._lock = threading.RLock()
        self._depth = 0
        self._closed = False

    def _prepare(self) -> None:
        # Switching a new database to WAL needs an exclusive lock and SQLite answers "locked"
        # at once, without waiting, when another process opens it at the same moment.
        for attempt in range(50):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.02 * (attempt + 1))
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        # An up-to-date database is opened without writing a byte: a full disk or a damaged
        # file must not keep it from being read, nor be written to by merely opening it.
        if self._db.execute("PRAGMA user_version").fetchone()[0] == DB_VERSION:
            return
        # Every statement is idempotent, so concurrent first opens are harmless.
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={DB_VERSION}")

    # --- transactions -------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            depth = self._depth
            name = f"sp{depth}"
            self._begin(depth, name)
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth = depth
                self._rollback(depth, name)
                raise
            self._depth = depth
            self._commit(depth, name)

    def _begin(self, depth: int, name: str) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start a transaction: {exc}") from exc

    def _commit(self, depth: int, name: str) -> None:
        try:
            self._db.execute("COMMIT" if depth == 0 else f"RELEASE {name}")
        except sqlite3.Error as exc:
            self._rollback(depth, name)
            raise StorageError(f"cannot commit: {exc}") from exc

    def _rollback(self, depth: int, name: str) -> None:
        if depth == 0:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        else:
            self._db.execute(f"ROLLBACK TO {name}")
            self._db.execute(f"RELEASE {name}")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One snapshot for a multi-statement read (inside a transaction: that one)."""
        with self._lock:
            if self._depth:
                yield self._db
                return
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            if self._depth:
                # Inside a transaction already: a failed statement undoes itself in SQLite,
                # so it needs no savepoint of its own.
                return self._execute(sql, params)
            with self.transaction():
                return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"refused by the database: {exc}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    # --- sessions -----------------------------------------------------------------------
    def create_session(self, session: Session) -> None:
        self._write(
            "INSERT INTO sessions (id, name, description, status, start_time, end_time,"
            " paused_at, total_paused, total_duration, config, tags, enrichment,"
            " schema_version, audio_attachment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            self._session_values(session),
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
            json.dumps(s.enrichment),
            s.schema_version,
            s.audio_attachment_id,
        )

    def update_session(self, session: Session) -> None:
        values = self._session_values(session)
        cur = self._write(
            "UPDATE sessions SET name=?, description=?, status=?, start_time=?, end_time=?,"
            " paused_at=?, total_paused=?, total_duration=?, config=?, tags=?, enrichment=?,"
            " schema_version=?, audio_attachment_id=? WHERE id=?",
            (*values[1:], values[0]),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no session {session.id!r}")

    def get_session(self, session_id: str) -> Session:
        with self._reading() as db:
            return self._load_session(db, session_id)

    def session_for_update(self, session_id: str) -> Session:
        # Only valid inside transaction(), whose BEGIN IMMEDIATE already holds the lock.
        if not self._depth:
            raise StorageError("session_for_update needs an open transaction")
        return self._load_session(self._db, session_id)

    def _load_session(self, db: sqlite3.Connection, session_id: str) -> Session:
        row = db.execute(
            "SELECT id, name, description, status, start_time, end_time, paused_at,"
            " total_paused, total_duration, config, tags, enrichment, schema_version,"
            " audio_attachment_id FROM sessions WHERE id=?",
            (session_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        data: dict[str, Any] = dict(
            zip(
                (
                    "id",
                    "name",
                    "description",
                    "status",
                    "start_time",
                    "end_time",
                    "paused_at",
                    "total_paused",
                    "total_duration",
                ),
                row[:9],
                strict=True,
            )
        )
        data["config"] = json.loads(row[9])
        data["tags"] = json.loads(row[10])
        data["enrichment"] = json.loads(row[11])
        data["schema_version"] = row[12]
        data["audio_attachment_id"] = row[13]
        session = from_dict(Session, data)
        session.config = from_dict(SessionConfig, data["config"])
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
            sources=json.loads(row[5]),
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
        video.chapters = [
            from_dict(VideoChapter, json.loads(r[0]))
            for r in db.execute(
                "SELECT data FROM chapters WHERE session_id=?"
                " ORDER BY json_extract(data, '$.start_offset')",
                (session_id,),
            )
        ]
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
            like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [like + "%"] * 3
        sql = _SUMMARY + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY s.start_time DESC, s.rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._reading() as db:
            rows = db.execute(sql, params).fetchall()
        return [
            SessionSummary(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                bool(r[8]),
                r[9],
                json.loads(r[10]) if r[10] != "[]" else [],
            )
            for r in rows
        ]

    def live_sessions(self) -> list[LiveSession]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT id, status, recorder, heartbeat FROM sessions"
                " WHERE status IN ('active', 'paused')"
            ).fetchall()
        return [
            LiveSession(r[0], r[1], ProcessOwner.decode(r[2]) if r[2] else None, r[3]) for r in rows
        ]

    def set_recorder(self, session_id: str, owner: ProcessOwner | None) -> None:
        self._write(
            "UPDATE sessions SET recorder=? WHERE id=?",
            (owner.encode() if owner else None, session_id),
        )

    def heartbeat(self, session_id: str, at: float) -> None:
        self._write("UPDATE sessions SET heartbeat=? WHERE id=?", (at, session_id))

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
        )

    def update_screenshot(self, shot: SessionScreenshot) -> None:
        cur = self._write(
            "UPDATE screenshots SET user_comment=?, flagged=?, ocr_text=?, analysis_status=?"
            " WHERE id=?",
            (shot.user_comment, int(shot.flagged), shot.ocr_text, shot.analysis_status, shot.id),
        )
        if cur.rowcount == 0:
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
        )

    def add_context_item(self, item: ContextItem) -> None:
        i = item
        self._write(
            "INSERT INTO context_items (id, session_id, timestamp, media_offset, type, content)"
            " VALUES (?,?,?,?,?,?)",
            (i.id, i.session_id, i.timestamp, i.media_offset, i.type, i.content),
        )

    # --- attachments --------------------------------------------------------------------
    _ATTACHMENT_COLUMNS = (
        "id, type, name, mime_type, size, hash, created_at, duration, width, height"
    )

    def add_attachment(self, attachment: Attachment) -> Attachment:
        a = attachment
        with self.transaction():
            self._db.execute(
                f"INSERT INTO attachments ({self._ATTACHMENT_COLUMNS})"
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
        assert existing is not None
        return existing

    def _attachment(self, where: str, value: str) -> Attachment | None:
        with self._reading() as db:
            row = db.execute(
                f"SELECT {self._ATTACHMENT_COLUMNS} FROM attachments WHERE {where}=?",
                (value,),
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
                f"SELECT {self._ATTACHMENT_COLUMNS} FROM attachments WHERE id IN ("
                " SELECT attachment_id FROM screenshots WHERE session_id=:s"
                " UNION SELECT attachment_id FROM audio_segments WHERE session_id=:s"
                " UNION SELECT full_video_attachment_id FROM videos WHERE session_id=:s"
                " UNION SELECT audio_attachment_id FROM sessions WHERE id=:s"
                " UNION SELECT c.attachment_id FROM video_chunks c"
                "   JOIN videos v ON v.id = c.video_id WHERE v.session_id=:s)",
                {"s": session_id},
            ).fetchall()
        return [Attachment(*r) for r in rows]

    def attachment_hashes(self) -> set[str]:
        with self._reading() as db:
            return {r[0] for r in db.execute("SELECT hash FROM attachments")}

    def delete_attachment(self, attachment_id: str) -> None:
        self._write("DELETE FROM attachments WHERE id=?", (attachment_id,))

    def add_blob_intent(self, intent: BlobIntent) -> None:
        self._write(
            "INSERT OR IGNORE INTO blob_intents (hash, owner) VALUES (?,?)",
            (intent.hash, intent.owner.encode()),
        )

    def remove_blob_intent(self, digest: str, owner: ProcessOwner) -> None:
        self._write("DELETE FROM blob_intents WHERE hash=? AND owner=?", (digest, owner.encode()))

    def blob_intents(self) -> list[BlobIntent]:
        with self._reading() as db:
            rows = db.execute("SELECT hash, owner FROM blob_intents").fetchall()
        return [BlobIntent(r[0], ProcessOwner.decode(r[1])) for r in rows]

    # --- live state ---------------------------------------------------------------------
    def write_stats(self, stats: RecordingStats) -> None:
        self._write(
            "INSERT OR REPLACE INTO recording_stats (session_id, data) VALUES (?,?)",
            (stats.session_id, json.dumps(to_dict(stats))),
        )

    def read_stats(self, session_id: str) -> RecordingStats | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT data FROM recording_stats WHERE session_id=?", (session_id,)
            ).fetchone()
        return from_dict(RecordingStats, json.loads(row[0])) if row else None

    def push_command(self, session_id: str, command: str) -> None:
        self._write(
            "INSERT INTO session_commands (session_id, command) VALUES (?,?)",
            (session_id, command),
        )

    def take_commands(self, session_id: str) -> list[str]:
        with self._lock:
            # A cheap read first: this is polled several times a second.
            row = self._db.execute(
                "SELECT 1 FROM session_commands WHERE session_id=? LIMIT 1", (session_id,)
            ).fetchone()
            if row is None:
                return []
            with self.transaction():
                rows = self._db.execute(
                    "DELETE FROM session_commands WHERE session_id=? RETURNING seq, command",
                    (session_id,),
                ).fetchall()
        return [command for _, command in sorted(rows)]

    # --- settings and health ------------------------------------------------------------
    def get_setting(self, key: str) -> object | None:
        with self._reading() as db:
            row = db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_setting(self, key: str, value: object) -> None:
        self._write(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?,?)", (key, json.dumps(value))
        )

    def integrity_problems(self) -> list[str]:
        with self._lock:
            try:
                rows = self._db.execute("PRAGMA integrity_check").fetchall()
                problems = [f"database: {r[0]}" for r in rows if r[0] != "ok"]
                problems += [
                    f"database: row {r[1]} of {r[0]} refers to a missing {r[2]} row"
                    for r in self._db.execute("PRAGMA foreign_key_check").fetchall()
                ]
            except sqlite3.DatabaseError as exc:
                problems = [f"database: {exc}"]
        return problems
