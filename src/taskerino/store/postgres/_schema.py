"""The database schema, and the steps that bring an older database up to date.

`taskerino_schema` holds the number of steps applied (one row). Opening a database takes
`pg_advisory_xact_lock` in the migration's transaction, so when several processes open a
new database at the same moment one migrates it and the others find it done; a database
already at the current version is only read.

Search: `search_items` holds the text of every searchable row with its `tsvector` (a GIN
index), kept in step by triggers on the source tables, in the same transaction as the
change. The text search configuration `taskerino` is `simple` (no stemming, no stop words,
as SQLite's unicode61) behind `unaccent`, over the text with every run of characters other
than letters and digits made one space, so that words split as SQLite's tokenizer splits
them ("e-mail" is "e" and "mail").
"""

from __future__ import annotations

from typing import Any

import psycopg

from ...errors import StorageError

# Any number unique to this program: the key of the migration's advisory lock.
_LOCK_KEY = 0x7A5C_E41B

_V1 = """
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TEXT SEARCH CONFIGURATION taskerino (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION taskerino ALTER MAPPING FOR
    asciiword, word, numword, asciihword, hword, numhword, hword_asciipart, hword_part,
    hword_numpart WITH unaccent, simple;

CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    duration DOUBLE PRECISION,
    width INTEGER,
    height INTEGER
);
CREATE TABLE sessions (
    seq BIGSERIAL UNIQUE,  -- creation order, the tie-breaker of every listing
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT,
    paused_at TEXT,
    total_paused DOUBLE PRECISION NOT NULL DEFAULT 0,
    total_duration DOUBLE PRECISION,
    config TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    enrichment TEXT NOT NULL DEFAULT '{}',
    schema_version INTEGER NOT NULL,
    recorder TEXT,
    heartbeat DOUBLE PRECISION,
    audio_attachment_id TEXT REFERENCES attachments(id),
    recycled TEXT NOT NULL DEFAULT '[]',  -- what the storage budget removed, JSON
    -- Kept by the triggers below, so that listing sessions counts nothing.
    screenshot_count INTEGER NOT NULL DEFAULT 0,
    audio_segment_count INTEGER NOT NULL DEFAULT 0,
    has_video BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX sessions_by_start_time ON sessions (start_time DESC, seq DESC);
CREATE INDEX sessions_by_status ON sessions (status);
CREATE INDEX sessions_by_audio ON sessions (audio_attachment_id);
CREATE TABLE screenshots (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset DOUBLE PRECISION NOT NULL,
    attachment_id TEXT NOT NULL REFERENCES attachments(id),
    hash TEXT NOT NULL,
    user_comment TEXT,
    flagged BOOLEAN NOT NULL DEFAULT false,
    ocr_text TEXT,
    analysis_status TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX screenshots_by_session ON screenshots (session_id, media_offset);
CREATE INDEX screenshots_by_attachment ON screenshots (attachment_id);
CREATE TABLE audio_segments (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset DOUBLE PRECISION NOT NULL,
    duration DOUBLE PRECISION NOT NULL,
    attachment_id TEXT NOT NULL REFERENCES attachments(id),
    transcription TEXT,
    transcription_status TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX audio_by_session ON audio_segments (session_id, media_offset);
CREATE INDEX audio_by_attachment ON audio_segments (attachment_id);
CREATE TABLE videos (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    full_video_attachment_id TEXT REFERENCES attachments(id),
    duration DOUBLE PRECISION NOT NULL DEFAULT 0,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    fps INTEGER NOT NULL,
    sources TEXT NOT NULL,
    compositor TEXT NOT NULL,
    chunking_status TEXT NOT NULL
);
CREATE INDEX videos_by_attachment ON videos (full_video_attachment_id);
CREATE TABLE video_chunks (
    id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    attachment_id TEXT NOT NULL REFERENCES attachments(id),
    idx INTEGER NOT NULL,
    start_offset DOUBLE PRECISION NOT NULL,
    end_offset DOUBLE PRECISION NOT NULL,
    frames INTEGER NOT NULL,
    bytes BIGINT NOT NULL,
    UNIQUE (video_id, idx)
);
CREATE INDEX chunks_by_attachment ON video_chunks (attachment_id);
CREATE TABLE context_items (
    seq BIGSERIAL,
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset DOUBLE PRECISION NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX context_by_session ON context_items (session_id, media_offset);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE recording_stats (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    data TEXT NOT NULL
);
CREATE TABLE session_commands (
    seq BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    command TEXT NOT NULL
);
CREATE INDEX commands_by_session ON session_commands (session_id, seq);
CREATE TABLE blob_intents (
    hash TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (hash, owner)
);

CREATE TABLE jobs (
    seq BIGSERIAL PRIMARY KEY,  -- enqueue order
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    run_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
-- At most one active job per session and kind: enqueueing again finds it.
CREATE UNIQUE INDEX jobs_one_active ON jobs (session_id, kind)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_queued ON jobs (run_at, seq) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_by_session ON jobs (session_id);

CREATE TABLE activity (
    seq BIGSERIAL,
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    media_offset DOUBLE PRECISION NOT NULL,
    app TEXT NOT NULL,
    title TEXT NOT NULL
);
CREATE INDEX activity_by_session ON activity (session_id, media_offset);
CREATE TABLE ocr_texts (
    seq BIGSERIAL,
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    media_offset DOUBLE PRECISION NOT NULL,
    screenshot_id TEXT REFERENCES screenshots(id) ON DELETE SET NULL,
    text TEXT NOT NULL,
    words TEXT NOT NULL DEFAULT '[]'  -- [[text, x, y, w, h], ...]
);
CREATE INDEX ocr_by_session ON ocr_texts (session_id, media_offset);
CREATE INDEX ocr_by_screenshot ON ocr_texts (screenshot_id);
CREATE TABLE transcript_lines (
    seq BIGSERIAL,
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    start_offset DOUBLE PRECISION NOT NULL,
    end_offset DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('mic', 'system', 'mixed'))
);
CREATE INDEX transcript_by_session ON transcript_lines (session_id, start_offset);
CREATE TABLE video_chapters (
    seq BIGSERIAL,
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    start_offset DOUBLE PRECISION NOT NULL,
    end_offset DOUBLE PRECISION NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    key_topics TEXT NOT NULL DEFAULT '[]',
    thumbnail_attachment_id TEXT REFERENCES attachments(id),
    confidence DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX chapters_by_session ON video_chapters (session_id, start_offset);
CREATE INDEX chapters_by_thumbnail ON video_chapters (thumbnail_attachment_id);

-- Counts kept on the session row.
CREATE FUNCTION taskerino_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'screenshots' THEN
        UPDATE sessions SET screenshot_count = screenshot_count
            + CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END
            WHERE id = CASE TG_OP WHEN 'INSERT' THEN NEW.session_id ELSE OLD.session_id END;
    ELSIF TG_TABLE_NAME = 'audio_segments' THEN
        UPDATE sessions SET audio_segment_count = audio_segment_count
            + CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END
            WHERE id = CASE TG_OP WHEN 'INSERT' THEN NEW.session_id ELSE OLD.session_id END;
    ELSE
        UPDATE sessions SET has_video = (TG_OP = 'INSERT')
            WHERE id = CASE TG_OP WHEN 'INSERT' THEN NEW.session_id ELSE OLD.session_id END;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER screenshots_counted AFTER INSERT OR DELETE ON screenshots
    FOR EACH ROW EXECUTE FUNCTION taskerino_count();
CREATE TRIGGER audio_counted AFTER INSERT OR DELETE ON audio_segments
    FOR EACH ROW EXECUTE FUNCTION taskerino_count();
CREATE TRIGGER video_counted AFTER INSERT OR DELETE ON videos
    FOR EACH ROW EXECUTE FUNCTION taskerino_count();

-- The search index: one row per searchable item, its words in `tsv`.
CREATE TABLE search_items (
    id BIGSERIAL PRIMARY KEY,  -- indexing order: the newest matches have the largest
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    media_offset DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    tsv TSVECTOR GENERATED ALWAYS AS
        (to_tsvector('taskerino', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) STORED,
    UNIQUE (kind, item_id)
);
CREATE INDEX search_items_words ON search_items USING GIN (tsv);
CREATE INDEX search_items_by_session ON search_items (session_id);

-- Put (or replace) one item in the index; an empty or NULL body takes it out.
CREATE FUNCTION taskerino_index(k TEXT, item TEXT, session TEXT, at DOUBLE PRECISION, body TEXT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(body, '') = '' AND k = 'comment' THEN
        DELETE FROM search_items WHERE kind = k AND item_id = item;
        RETURN;
    END IF;
    INSERT INTO search_items (kind, item_id, session_id, media_offset, body)
        VALUES (k, item, session, at, coalesce(body, ''))
        ON CONFLICT (kind, item_id) DO UPDATE
        SET body = excluded.body, media_offset = excluded.media_offset;
END $$;

CREATE FUNCTION taskerino_indexed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k TEXT := TG_ARGV[0];
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM search_items WHERE kind = k AND item_id = OLD.id;
        RETURN NULL;
    END IF;
    IF k = 'session' THEN
        PERFORM taskerino_index(k, NEW.id, NEW.id, 0, CASE WHEN NEW.description = ''
            THEN NEW.name ELSE NEW.name || ' — ' || NEW.description END);
    ELSIF k = 'note' THEN
        PERFORM taskerino_index(k, NEW.id, NEW.session_id, NEW.media_offset, NEW.content);
    ELSIF k = 'comment' THEN
        PERFORM taskerino_index(k, NEW.id, NEW.session_id, NEW.media_offset, NEW.user_comment);
    ELSIF k = 'activity' THEN
        PERFORM taskerino_index(k, NEW.id, NEW.session_id, NEW.media_offset,
            CASE WHEN NEW.app = '' THEN NEW.title WHEN NEW.title = '' THEN NEW.app
            ELSE NEW.title || ' — ' || NEW.app END);
    ELSIF k = 'ocr' THEN
        PERFORM taskerino_index(k, NEW.id, NEW.session_id, NEW.media_offset, NEW.text);
    ELSIF k = 'transcript' THEN
        PERFORM taskerino_index(k, NEW.id, NEW.session_id, NEW.start_offset, NEW.text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER session_indexed AFTER INSERT OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION taskerino_indexed('session');
CREATE TRIGGER session_reindexed AFTER UPDATE OF name, description ON sessions FOR EACH ROW
    WHEN (old.name IS DISTINCT FROM new.name OR old.description IS DISTINCT FROM new.description)
    EXECUTE FUNCTION taskerino_indexed('session');
CREATE TRIGGER note_indexed AFTER INSERT OR DELETE OR UPDATE OF content, media_offset
    ON context_items FOR EACH ROW EXECUTE FUNCTION taskerino_indexed('note');
CREATE TRIGGER comment_indexed AFTER INSERT OR DELETE ON screenshots FOR EACH ROW
    EXECUTE FUNCTION taskerino_indexed('comment');
CREATE TRIGGER comment_reindexed AFTER UPDATE OF user_comment ON screenshots FOR EACH ROW
    WHEN (old.user_comment IS DISTINCT FROM new.user_comment)
    EXECUTE FUNCTION taskerino_indexed('comment');
CREATE TRIGGER activity_indexed AFTER INSERT OR DELETE ON activity
    FOR EACH ROW EXECUTE FUNCTION taskerino_indexed('activity');
CREATE TRIGGER ocr_indexed AFTER INSERT OR DELETE ON ocr_texts
    FOR EACH ROW EXECUTE FUNCTION taskerino_indexed('ocr');
CREATE TRIGGER transcript_indexed AFTER INSERT OR DELETE ON transcript_lines
    FOR EACH ROW EXECUTE FUNCTION taskerino_indexed('transcript');
"""

# What other processes wait for (`Waiting`), announced by NOTIFY inside the writing
# transaction, so that it is delivered when (and only if) the change commits. One channel
# per kind of topic, the session's id as payload: a process LISTENs only to the kinds it
# waits for, and the notifications of one transaction with the same payload are one.
_V2 = """
CREATE FUNCTION taskerino_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_ARGV[0] = 'taskerino_jobs' THEN
        PERFORM pg_notify(TG_ARGV[0], '');
    ELSIF TG_ARGV[0] = 'taskerino_session' THEN
        PERFORM pg_notify(TG_ARGV[0], NEW.id);
    ELSE
        PERFORM pg_notify(TG_ARGV[0], NEW.session_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER command_pushed AFTER INSERT ON session_commands
    FOR EACH ROW EXECUTE FUNCTION taskerino_notify('taskerino_commands');
CREATE TRIGGER job_queued AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION taskerino_notify('taskerino_jobs');
CREATE TRIGGER stats_written AFTER INSERT OR UPDATE ON recording_stats
    FOR EACH ROW EXECUTE FUNCTION taskerino_notify('taskerino_stats');
CREATE TRIGGER session_created AFTER INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION taskerino_notify('taskerino_session');
-- Not the heartbeat nor the recorder: they change every second and nobody waits for them.
CREATE TRIGGER session_changed AFTER UPDATE ON sessions FOR EACH ROW
    WHEN ((OLD.status, OLD.paused_at, OLD.total_paused, OLD.end_time, OLD.total_duration,
           OLD.name, OLD.description, OLD.tags, OLD.enrichment)
          IS DISTINCT FROM
          (NEW.status, NEW.paused_at, NEW.total_paused, NEW.end_time, NEW.total_duration,
           NEW.name, NEW.description, NEW.tags, NEW.enrichment))
    EXECUTE FUNCTION taskerino_notify('taskerino_session');
"""


# Search ranks every match of a query, which reads each match's tsvector: keep it in the
# row, not compressed (it was in TOAST, compressed, for most OCR texts), and move the text
# out instead (it is read for the page of hits only). `words` is the number of words of the
# text, the length that ranking divides by (ts_rank's normalisation 1 counts it again from
# the tsvector for every match). The tsvector is made again (a column added, not altered,
# so that every row is rewritten with the new storage) and the index with it.
_V3 = """
DROP INDEX search_items_words;
ALTER TABLE search_items DROP COLUMN tsv;
ALTER TABLE search_items
    ALTER COLUMN body SET STORAGE EXTERNAL,
    ADD COLUMN words INTEGER GENERATED ALWAYS AS (
        length(btrim(regexp_replace(body, '[^[:alnum:]]+', ' ', 'g')))
        - length(replace(btrim(regexp_replace(body, '[^[:alnum:]]+', ' ', 'g')), ' ', '')) + 1
    ) STORED,
    ADD COLUMN tsv TSVECTOR GENERATED ALWAYS AS
        (to_tsvector('taskerino', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) STORED,
    ALTER COLUMN tsv SET STORAGE MAIN;
CREATE INDEX search_items_words ON search_items USING GIN (tsv);
ANALYZE search_items;
"""

# Ranking every match of a common word reads every match's tsvector from the heap. A RUM
# index (the `rum` extension, Debian's postgresql-NN-rum) keeps each word's positions
# beside its postings, so `ORDER BY tsv <=> query LIMIT n` ranks the matches inside the
# index and reads the heap for the page of hits only. Where the server has the extension
# and lets this user create it, the RUM index replaces the GIN one (it answers `@@` as
# well); where not (a managed server without it, no privilege), the GIN index stays and
# search ranks every match from the heap. Search chooses by what the database has (the
# index `search_items_rum`), so an administrator may create it later by hand:
#   CREATE EXTENSION rum;
#   CREATE INDEX search_items_rum ON search_items USING rum (tsv rum_tsvector_ops);
_V4 = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'rum') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS rum;
            CREATE INDEX search_items_rum ON search_items USING rum (tsv rum_tsvector_ops);
            DROP INDEX search_items_words;
        EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
            RAISE NOTICE 'no RUM index (%): search ranks its matches from the table', SQLERRM;
        END;
    END IF;
END $$;
"""

# Session times are ISO-8601 UTC text, which sorts by time byte for byte: the database's
# locale collation (the default) compared them letter by letter at several levels, a third
# of listing 10 000 sessions. The index on them is rebuilt with the column.
_V5 = """
ALTER TABLE sessions ALTER COLUMN start_time TYPE TEXT COLLATE "C";
ANALYZE sessions;
"""

RUM_INDEX = "search_items_rum"

# version N -> the script that makes a version-N database a version-N+1 one.
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2, 2: _V3, 3: _V4, 4: _V5}
DB_VERSION = len(MIGRATIONS)


def _version(db: psycopg.Connection[Any]) -> int | None:
    """The schema version of the database; None when it has no Taskerino schema yet."""
    if db.execute("SELECT to_regclass('taskerino_schema')").fetchone() == (None,):
        return None
    row = db.execute("SELECT version FROM taskerino_schema").fetchone()
    return int(row[0]) if row else None


def ranks_in_index(db: psycopg.Connection[Any]) -> bool:
    """Whether the database has the RUM index that search ranks matches with."""
    row = db.execute("SELECT to_regclass(%s) IS NOT NULL", (RUM_INDEX,)).fetchone()
    return bool(row and row[0])


def migrate(db: psycopg.Connection[Any], shown: str) -> None:
    """Bring the database at the (autocommit) connection `db` to `DB_VERSION`, once across
    every process that opens it at the same moment."""
    encoding = db.execute("SHOW server_encoding").fetchone()
    if encoding is None or encoding[0] != "UTF8":
        raise StorageError(
            f"the database {shown} is not UTF-8 ({encoding[0] if encoding else '?'}): "
            "create it with ENCODING 'UTF8'"
        )
    version = _version(db)
    if version == DB_VERSION:
        return
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        # Read again under the lock: another process may have migrated meanwhile.
        version = _version(db)
        if version is not None and version > DB_VERSION:
            raise StorageError(
                f"the database {shown} was written by a newer version of Taskerino (schema "
                f"{version}, this one knows {DB_VERSION}): upgrade Taskerino; it was not "
                "modified"
            )
        if version is None:
            db.execute("CREATE TABLE taskerino_schema (version INTEGER NOT NULL)")
            db.execute("INSERT INTO taskerino_schema VALUES (0)")
            version = 0
        for step in range(version, DB_VERSION):
            db.execute(MIGRATIONS[step].encode())
        db.execute("UPDATE taskerino_schema SET version = %s", (DB_VERSION,))
