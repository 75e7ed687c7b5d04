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

# Enrichment rows and the search index.
#
# `search_index` (FTS5) holds the text of every searchable row: `body` is what is searched,
# `session` the session's id, so that a search inside one session is an intersection the
# index does itself (it is given no weight in the ranking). `search_items` says what each
# index row is; its integer key is the index row's rowid, so the triggers below find the
# index row of a source row through the unique (kind, item_id) without relying on the
# source tables' own rowids (which VACUUM may renumber). The triggers keep both in step
# with the source tables in the same statement, so nothing that writes those tables can
# forget the index, and a rolled back change leaves it as it was.
_V3_ENRICHMENT = """
CREATE TABLE IF NOT EXISTS activity (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset REAL NOT NULL,
    app TEXT NOT NULL,
    title TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_by_session ON activity (session_id, media_offset);
CREATE TABLE IF NOT EXISTS ocr_texts (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    media_offset REAL NOT NULL,
    screenshot_id TEXT REFERENCES screenshots(id) ON DELETE SET NULL,
    text TEXT NOT NULL,
    words TEXT NOT NULL DEFAULT '[]'  -- [[text, x, y, w, h], ...]
);
CREATE INDEX IF NOT EXISTS ocr_by_session ON ocr_texts (session_id, media_offset);
CREATE INDEX IF NOT EXISTS ocr_by_screenshot ON ocr_texts (screenshot_id);
CREATE TABLE IF NOT EXISTS transcript_lines (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    start_offset REAL NOT NULL,
    end_offset REAL NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('mic', 'system', 'mixed'))
);
CREATE INDEX IF NOT EXISTS transcript_by_session ON transcript_lines (session_id, start_offset);
-- Chapters get columns of their own (the thumbnail is a reference the database checks).
CREATE TABLE IF NOT EXISTS video_chapters (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    start_offset REAL NOT NULL,
    end_offset REAL NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    key_topics TEXT NOT NULL DEFAULT '[]',
    thumbnail_attachment_id TEXT REFERENCES attachments(id),
    confidence REAL NOT NULL DEFAULT 0
);
INSERT INTO video_chapters SELECT id, session_id,
    coalesce(json_extract(data, '$.start_offset'), 0),
    coalesce(json_extract(data, '$.end_offset'), 0),
    coalesce(json_extract(data, '$.title'), ''),
    coalesce(json_extract(data, '$.summary'), ''),
    coalesce(json_extract(data, '$.key_topics'), '[]'),
    json_extract(data, '$.thumbnail_attachment_id'),
    coalesce(json_extract(data, '$.confidence'), 0)
    FROM chapters;
DROP TABLE chapters;
CREATE INDEX IF NOT EXISTS chapters_by_session ON video_chapters (session_id, start_offset);
CREATE INDEX IF NOT EXISTS chapters_by_thumbnail ON video_chapters (thumbnail_attachment_id);

CREATE TABLE IF NOT EXISTS search_items (
    id INTEGER PRIMARY KEY,  -- the rowid of the row in search_index
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    media_offset REAL NOT NULL,
    UNIQUE (kind, item_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS search_index USING fts5(
    body, session, tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
);

-- sessions: name and description
CREATE TRIGGER IF NOT EXISTS session_indexed AFTER INSERT ON sessions BEGIN
    INSERT INTO search_items (kind, item_id, session_id, media_offset)
        VALUES ('session', new.id, new.id, 0);
    INSERT INTO search_index (rowid, body, session)
        SELECT id, CASE WHEN new.description = '' THEN new.name
                   ELSE new.name || ' — ' || new.description END, new.id
        FROM search_items WHERE kind = 'session' AND item_id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS session_reindexed AFTER UPDATE OF name, description ON sessions
WHEN old.name IS NOT new.name OR old.description IS NOT new.description BEGIN
    UPDATE search_index SET body = CASE WHEN new.description = '' THEN new.name
                                   ELSE new.name || ' — ' || new.description END
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'session' AND item_id = new.id);
END;
CREATE TRIGGER IF NOT EXISTS session_unindexed AFTER DELETE ON sessions BEGIN
    DELETE FROM search_index
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'session' AND item_id = old.id);
    DELETE FROM search_items WHERE kind = 'session' AND item_id = old.id;
END;

-- context items (notes, tasks, markers)
CREATE TRIGGER IF NOT EXISTS note_indexed AFTER INSERT ON context_items BEGIN
    INSERT INTO search_items (kind, item_id, session_id, media_offset)
        VALUES ('note', new.id, new.session_id, new.media_offset);
    INSERT INTO search_index (rowid, body, session)
        SELECT id, new.content, new.session_id
        FROM search_items WHERE kind = 'note' AND item_id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS note_reindexed AFTER UPDATE OF content, media_offset
ON context_items BEGIN
    UPDATE search_items SET media_offset = new.media_offset
        WHERE kind = 'note' AND item_id = new.id;
    UPDATE search_index SET body = new.content
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'note' AND item_id = new.id);
END;
CREATE TRIGGER IF NOT EXISTS note_unindexed AFTER DELETE ON context_items BEGIN
    DELETE FROM search_index
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'note' AND item_id = old.id);
    DELETE FROM search_items WHERE kind = 'note' AND item_id = old.id;
END;

-- screenshot comments (only screenshots that have one)
CREATE TRIGGER IF NOT EXISTS comment_indexed AFTER INSERT ON screenshots
WHEN new.user_comment <> '' BEGIN
    INSERT INTO search_items (kind, item_id, session_id, media_offset)
        VALUES ('comment', new.id, new.session_id, new.media_offset);
    INSERT INTO search_index (rowid, body, session)
        SELECT id, new.user_comment, new.session_id
        FROM search_items WHERE kind = 'comment' AND item_id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS comment_reindexed AFTER UPDATE OF user_comment ON screenshots
WHEN old.user_comment IS NOT new.user_comment BEGIN
    DELETE FROM search_index
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'comment' AND item_id = old.id);
    DELETE FROM search_items WHERE kind = 'comment' AND item_id = old.id;
    INSERT INTO search_items (kind, item_id, session_id, media_offset)
        SELECT 'comment', new.id, new.session_id, new.media_offset
        WHERE new.user_comment <> '';
    INSERT INTO search_index (rowid, body, session)
        SELECT id, new.user_comment, new.session_id
        FROM search_items WHERE kind = 'comment' AND item_id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS comment_unindexed AFTER DELETE ON screenshots
WHEN old.user_comment <> '' BEGIN
    DELETE FROM search_index
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'comment' AND item_id = old.id);
    DELETE FROM search_items WHERE kind = 'comment' AND item_id = old.id;
END;

-- activity: window title and application
CREATE TRIGGER IF NOT EXISTS activity_indexed AFTER INSERT ON activity BEGIN
    INSERT INTO search_items (kind, item_id, session_id, media_offset)
        VALUES ('activity', new.id, new.session_id, new.media_offset);
    INSERT INTO search_index (rowid, body, session)
        SELECT id, CASE WHEN new.app = '' THEN new.title WHEN new.title = '' THEN new.app
                   ELSE new.title || ' — ' || new.app END, new.session_id
        FROM search_items WHERE kind = 'activity' AND item_id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS activity_unindexed AFTER DELETE ON activity BEGIN
    DELETE FROM search_index
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'activity' AND item_id = old.id);
    DELETE FROM search_items WHERE kind = 'activity' AND item_id = old.id;
END;

-- OCR texts
CREATE TRIGGER IF NOT EXISTS ocr_indexed AFTER INSERT ON ocr_texts BEGIN
    INSERT INTO search_items (kind, item_id, session_id, media_offset)
        VALUES ('ocr', new.id, new.session_id, new.media_offset);
    INSERT INTO search_index (rowid, body, session)
        SELECT id, new.text, new.session_id
        FROM search_items WHERE kind = 'ocr' AND item_id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS ocr_unindexed AFTER DELETE ON ocr_texts BEGIN
    DELETE FROM search_index
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'ocr' AND item_id = old.id);
    DELETE FROM search_items WHERE kind = 'ocr' AND item_id = old.id;
END;

-- transcript lines
CREATE TRIGGER IF NOT EXISTS transcript_indexed AFTER INSERT ON transcript_lines BEGIN
    INSERT INTO search_items (kind, item_id, session_id, media_offset)
        VALUES ('transcript', new.id, new.session_id, new.start_offset);
    INSERT INTO search_index (rowid, body, session)
        SELECT id, new.text, new.session_id
        FROM search_items WHERE kind = 'transcript' AND item_id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS transcript_unindexed AFTER DELETE ON transcript_lines BEGIN
    DELETE FROM search_index
        WHERE rowid = (SELECT id FROM search_items WHERE kind = 'transcript' AND item_id = old.id);
    DELETE FROM search_items WHERE kind = 'transcript' AND item_id = old.id;
END;

-- What an older database already holds becomes searchable too.
INSERT INTO search_items (kind, item_id, session_id, media_offset)
    SELECT 'session', id, id, 0 FROM sessions;
INSERT INTO search_items (kind, item_id, session_id, media_offset)
    SELECT 'note', id, session_id, media_offset FROM context_items;
INSERT INTO search_items (kind, item_id, session_id, media_offset)
    SELECT 'comment', id, session_id, media_offset FROM screenshots WHERE user_comment <> '';
INSERT INTO search_index (rowid, body, session)
    SELECT i.id, CASE WHEN s.description = '' THEN s.name
                 ELSE s.name || ' — ' || s.description END, s.id
    FROM search_items i JOIN sessions s ON i.kind = 'session' AND s.id = i.item_id;
INSERT INTO search_index (rowid, body, session)
    SELECT i.id, c.content, c.session_id
    FROM search_items i JOIN context_items c ON i.kind = 'note' AND c.id = i.item_id;
INSERT INTO search_index (rowid, body, session)
    SELECT i.id, p.user_comment, p.session_id
    FROM search_items i JOIN screenshots p ON i.kind = 'comment' AND p.id = i.item_id;
"""

# What the storage budget removed from each session (`taskerino gc`), as a JSON list.
_V4_RECYCLED = """
ALTER TABLE sessions ADD COLUMN recycled TEXT NOT NULL DEFAULT '[]';
"""

# user_version N -> the script that makes a version-N database a version-N+1 one.
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2_JOBS, 2: _V3_ENRICHMENT, 3: _V4_RECYCLED}
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
