"""The database schema, and the steps that bring an older database up to date.

`PRAGMA user_version` holds the number of steps applied. A step is a script of statements;
`statements` splits it so that the steps can run inside one `BEGIN IMMEDIATE` transaction
(sqlite3's `executescript` would commit first). A database opened at the current version is
not written at all, so opening a damaged or foreign file never changes it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

_V1 = """
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

_V2_JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,  -- enqueue order
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    run_at REAL NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
-- At most one active job per session and kind: enqueueing again finds it.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active ON jobs (session_id, kind)
    WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at);
"""

# user_version N -> the script that makes a version-N database a version-N+1 one.
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2_JOBS}
DB_VERSION = len(MIGRATIONS)
# The whole current schema as one script (for tools that build a database from scratch).
SCHEMA = "".join(MIGRATIONS[v] for v in range(DB_VERSION))


def statements(script: str) -> Iterator[str]:
    """The statements of a script, triggers (with their inner semicolons) kept whole."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete statement at the end of a migration: {pending!r}")
