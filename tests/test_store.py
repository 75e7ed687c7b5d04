"""What is particular to the SQLite store and the folder blob store, and MediaLibrary over them.

The interface contracts every back end keeps are tested in tests/contract/.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskerino.errors import StorageError
from taskerino.models import (
    ActivityEvent,
    Attachment,
    ContextItem,
    OcrText,
    RecycledMedia,
    Session,
    SessionScreenshot,
    SessionVideo,
    TranscriptLine,
    VideoChapter,
    new_id,
)
from taskerino.process import ProcessOwner, current_owner
from taskerino.store import FolderBlobStore, SQLiteStore, Store
from taskerino.store.base import BlobIntent
from taskerino.store.media import MediaLibrary
from taskerino.store.sqlite import DB_VERSION
from taskerino.store.sqlite._schema import MIGRATIONS
from taskerino.store.sqlite._waiting import LOOK_SECONDS
from taskerino.store.watch import Topic


def make_session(name: str = "s", start: str = "2026-01-01T00:00:00.000Z") -> Session:
    return Session(id=new_id(), name=name, start_time=start)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = SQLiteStore(tmp_path / "t.db")
    yield s
    s.close()


def test_plain_sqlite_sees_committed_rows_only(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    reader = sqlite3.connect(path)
    with store.transaction():
        store.create_session(make_session())
        assert reader.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
    assert reader.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
    reader.close()
    store.close()


def test_ingest_deduplicates_and_sweep_removes_dead_intents(tmp_path: Path, store: Store) -> None:
    blobs = FolderBlobStore(tmp_path / "blobs")
    media = MediaLibrary(store, blobs)
    for _ in range(2):
        f = tmp_path / "img.webp"
        f.write_bytes(b"same bytes")
        attachment = media.ingest(f, "image", "img.webp")
        assert not f.exists()
    assert len(store.attachment_hashes()) == 1
    assert attachment.mime_type == "image/webp" and attachment.size == 10
    # A writer that died between writing the blob and committing its row.
    orphan = tmp_path / "orphan"
    orphan.write_bytes(b"never committed")
    from taskerino.store.media import sha256_file

    digest = sha256_file(orphan)
    dead = ProcessOwner(current_owner().host, 999999999, "1")
    store.add_blob_intent(BlobIntent(digest, dead))
    blobs.put_file(orphan, digest)
    assert media.orphans() == ([digest], [])
    assert media.sweep() == [digest]
    assert media.orphans() == ([], [])
    assert store.blob_intents() == []
    # A live writer's in-flight blob is neither an orphan nor swept.
    store.add_blob_intent(BlobIntent(digest, current_owner()))
    blobs.put_file(orphan, digest)
    assert media.orphans() == ([], [])
    assert media.sweep() == []
    assert blobs.exists(digest)
    os.unlink(orphan)


def _open_and_close(path: str) -> None:
    SQLiteStore(Path(path)).close()


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for attempt in range(10):
        path = tmp_path / f"{attempt}.db"
        procs = [ctx.Process(target=_open_and_close, args=(str(path),)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0], attempt


# --- readers never wait for the writer ----------------------------------------------------


def test_reader_in_another_thread_completes_while_a_transaction_is_open(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    committed = make_session("committed")
    store.create_session(committed)
    inside, release = threading.Event(), threading.Event()
    seen_by_writer: list[list[str]] = []

    def write() -> None:
        with store.transaction():
            store.create_session(make_session("uncommitted"))
            # The writer's own reads see its uncommitted row.
            seen_by_writer.append([s.name for s in store.list_sessions()])
            inside.set()
            release.wait(30)

    writer = threading.Thread(target=write)
    writer.start()
    assert inside.wait(10)
    seen_by_reader: list[tuple[str, list[str]]] = []

    def read() -> None:
        name = store.get_session(committed.id).name
        seen_by_reader.append((name, [s.name for s in store.list_sessions()]))

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(10)
    reader_finished_first = not reader.is_alive()
    release.set()
    writer.join(10)
    reader.join(10)
    store.close()
    assert reader_finished_first, "the reader waited for the writer's transaction"
    assert seen_by_reader == [("committed", ["committed"])]
    assert seen_by_writer == [["uncommitted", "committed"]]


def _handles_on(path: Path) -> int:
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd) == str(path)
    return count


def test_close_releases_every_connection_and_is_safe_twice(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    session = make_session()
    store.create_session(session)
    store.get_session(session.id)  # this thread's read connection
    assert _handles_on(path) == 2
    results: list[str] = []
    for _ in range(5):
        t = threading.Thread(target=lambda: results.append(store.get_session(session.id).id))
        t.start()
        t.join(10)
    assert results == [session.id] * 5
    # A finished thread's connection is closed; SQLite may keep one descriptor of a closed
    # connection for reuse while others hold locks on the file, but never one per thread.
    assert _handles_on(path) <= 3, "finished threads' read connections stayed open"
    keep_reading, stop = threading.Event(), threading.Event()

    def linger() -> None:
        store.list_sessions()
        keep_reading.set()
        stop.wait(10)

    lingering = threading.Thread(target=linger)
    lingering.start()
    assert keep_reading.wait(10)
    store.close()
    assert _handles_on(path) == 0, "close() left a connection open"
    store.close()
    stop.set()
    lingering.join(10)
    with pytest.raises(StorageError, match="closed"):
        store.get_session(session.id)
    with pytest.raises(StorageError, match="closed"):
        store.create_session(make_session())
    with pytest.raises(StorageError, match="closed"):
        store.list_sessions()


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(MIGRATIONS[0])
    old.execute("PRAGMA user_version=1")
    old.execute(
        "INSERT INTO sessions (id, name, status, start_time, schema_version)"
        " VALUES ('old', 'from v1', 'completed', '2025-01-01T00:00:00.000Z', 1)"
    )
    old.close()
    store = SQLiteStore(path)
    assert store.get_session("old").name == "from v1"
    job = store.enqueue_job("old", "ocr", now=1.0)
    assert store.list_jobs() == [job]
    store.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone() == (DB_VERSION,)
    check.close()
    assert DB_VERSION == len(MIGRATIONS) == 4


def test_a_version_3_database_gets_the_recycled_column(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(MIGRATIONS[0] + MIGRATIONS[1] + MIGRATIONS[2])
    old.execute("PRAGMA user_version=3")
    old.execute(
        "INSERT INTO sessions (id, name, status, start_time, schema_version)"
        " VALUES ('old', 'from v3', 'completed', '2025-01-01T00:00:00.000Z', 2)"
    )
    old.close()
    store = SQLiteStore(path)
    try:
        session = store.get_session("old")
        assert session.name == "from v3" and session.recycled == []
        session.recycled.append(RecycledMedia("screenshots", 2, 10))
        store.update_session(session)
        assert store.get_session("old").recycled == session.recycled
    finally:
        store.close()


def test_a_version_2_database_gets_its_text_indexed_and_chapters_moved(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    old.execute("PRAGMA user_version=2")
    old.executescript(
        """
        INSERT INTO sessions (id, name, description, status, start_time, end_time,
            enrichment, schema_version)
        VALUES ('old', 'Walrus review', 'with the penguin team', 'completed',
            '2025-01-01T00:00:00.000Z', '2025-01-01T01:00:00.000Z',
            '{"ocr": "done", "chapters": "failed: no video"}', 1);
        INSERT INTO attachments (id, type, name, mime_type, size, hash, created_at)
        VALUES ('a', 'image', 'x.webp', 'image/webp', 3, '%s', 't');
        INSERT INTO screenshots (id, session_id, timestamp, media_offset, attachment_id, hash,
            user_comment)
        VALUES ('p', 'old', 't', 12.5, 'a', 'h', 'a narwhal'),
            ('q', 'old', 't', 13, 'a', 'h', NULL);
        INSERT INTO context_items (id, session_id, timestamp, media_offset, type, content)
        VALUES ('n', 'old', 't', 3.0, 'task', 'call the plumber');
        INSERT INTO videos (id, session_id, width, height, fps, sources, compositor,
            chunking_status)
        VALUES ('v', 'old', 640, 360, 15, '[]', 'grid', 'complete');
        INSERT INTO chapters (id, session_id, data) VALUES
            ('c2', 'old', '{"start_offset": 60, "end_offset": 90, "title": "Later"}'),
            ('c1', 'old', '{"id": "c1", "start_offset": 0, "end_offset": 60, "title": "First",
              "key_topics": ["x"], "thumbnail_attachment_id": "a", "confidence": 0.5}');
        """
        % ("a" * 64)
    )
    old.close()
    store = SQLiteStore(path)
    try:
        session = store.get_session("old")
        assert session.enrichment["ocr"].status == "done"
        assert session.enrichment["chapters"].error == "no video"
        assert session.video is not None
        assert [(c.id, c.title, c.key_topics) for c in session.video.chapters] == [
            ("c1", "First", ["x"]),
            ("c2", "Later", []),
        ]
        assert session.video.chapters[0].thumbnail_attachment_id == "a"
        found = {q: [(h.kind, h.item_id) for h in store.search(q)] for q in ("walrus", "penguin")}
        assert found == {"walrus": [("session", "old")], "penguin": [("session", "old")]}
        assert [(h.kind, h.item_id) for h in store.search("plumber")] == [("note", "n")]
        assert [(h.kind, h.media_offset) for h in store.search("narwhal")] == [("comment", 12.5)]
        assert store.integrity_problems() == []
    finally:
        store.close()


def test_opening_an_up_to_date_database_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    session = make_session("Walrus")
    store.create_session(session)
    store.add_context_item(ContextItem(new_id(), session.id, "t", 1.0, "note", "plumber"))
    store.close()
    before = path.read_bytes()
    store = SQLiteStore(path)
    assert store.get_session(session.id).context_items != []
    assert [h.kind for h in store.search("walrus OR plumber")] == ["session", "note"]
    store.close()
    assert path.read_bytes() == before


def test_rows_deleted_underneath_leave_the_index(tmp_path: Path, store: Store) -> None:
    """The index follows deletes too, however they happen (here: the database's own
    cascade when a session row goes)."""
    gone, kept = make_session("Walrus gone"), make_session("Walrus kept")
    for session in (gone, kept):
        store.create_session(session)
        att = store.add_attachment(
            Attachment(new_id(), "image", "x", "image/webp", 1, new_id() + new_id())
        )
        shot = SessionScreenshot(new_id(), session.id, "t", 1.0, att.id, att.hash, "walrus shot")
        store.add_screenshot(shot)
        store.add_context_item(ContextItem(new_id(), session.id, "t", 2.0, "note", "walrus note"))
        store.add_activity(ActivityEvent(new_id(), session.id, "t", 3.0, "Code", "walrus.py"))
        store.replace_ocr(session.id, [OcrText(new_id(), session.id, 4.0, shot.id, "walrus")])
        store.replace_transcript(
            session.id, [TranscriptLine(new_id(), session.id, 5.0, 6.0, "walrus", "mic")]
        )
    assert len(store.search("walrus")) == 12
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("DELETE FROM screenshots WHERE session_id=?", (kept.id,))
    db.execute("DELETE FROM sessions WHERE id=?", (gone.id,))
    db.close()
    hits = store.search("walrus")
    assert {h.session_id for h in hits} == {kept.id}
    assert sorted(h.kind for h in hits) == ["activity", "note", "ocr", "session", "transcript"]
    (ocr,) = store.get_session(kept.id).ocr
    assert ocr.screenshot_id is None, "the OCR text outlives its screenshot"
    check = sqlite3.connect(tmp_path / "t.db")
    assert check.execute("SELECT count(*) FROM search_items").fetchone() == (5,)
    assert check.execute("SELECT count(*) FROM search_index").fetchone() == (5,)
    check.close()


def _thumbnail(tmp_path: Path, media: MediaLibrary, content: bytes) -> Attachment:
    f = tmp_path / "thumb.webp"
    f.write_bytes(content)
    return media.ingest(f, "image", "thumb.webp")


def test_discard_deletes_unused_thumbnails_row_and_blob(tmp_path: Path, store: Store) -> None:
    blobs = FolderBlobStore(tmp_path / "blobs")
    media = MediaLibrary(store, blobs)
    session = make_session()
    store.create_session(session)
    store.save_video(SessionVideo(new_id(), session.id, 64, 64, 15, [], "grid"))
    first, second = (_thumbnail(tmp_path, media, c) for c in (b"first", b"second"))

    def chapter(thumbnail: Attachment) -> VideoChapter:
        return VideoChapter(
            new_id(), session.id, 0.0, 1.0, "t", thumbnail_attachment_id=thumbnail.id
        )

    store.replace_chapters(session.id, [chapter(first)])
    with store.transaction():
        unused = store.replace_chapters(session.id, [chapter(second)])
    assert unused == [first.id]
    assert media.discard([*unused, second.id, "nope"]) == [first.hash]
    assert not blobs.exists(first.hash) and store.attachment_by_hash(first.hash) is None
    assert blobs.exists(second.hash) and store.attachment_by_hash(second.hash) == second
    assert media.orphans() == ([], []) and store.blob_intents() == []


def test_a_discard_killed_half_way_is_finished_by_recovery(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = FolderBlobStore(tmp_path / "blobs")
    media = MediaLibrary(store, blobs)
    unused = _thumbnail(tmp_path, media, b"unused")
    dead = ProcessOwner(current_owner().host, 999999999, "1")
    monkeypatch.setattr("taskerino.store.media.current_owner", lambda: dead)

    def killed(digest: str) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(blobs, "delete", killed)
    with pytest.raises(KeyboardInterrupt):
        media.discard([unused.id])
    monkeypatch.undo()
    # The row is gone, the blob is left with the dead process's intent: not an orphan for
    # long, since every open of the store sweeps it.
    assert store.attachment_by_hash(unused.hash) is None and blobs.exists(unused.hash)
    assert media.sweep() == [unused.hash]
    assert media.orphans() == ([], []) and not blobs.exists(unused.hash)


def test_a_query_matching_too_much_is_ranked_among_its_newest_matches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskerino.store.sqlite._search.RANKED_AT_MOST", 3)
    session = make_session()
    store.create_session(session)
    best = ContextItem(new_id(), session.id, "t", 0.0, "note", "quokka quokka")
    store.add_context_item(best)
    newer = [
        ContextItem(new_id(), session.id, "t", 1.0 + i, "note", "quokka " + "x " * (i + 5))
        for i in range(4)
    ]
    for item in newer:
        store.add_context_item(item)
    assert {h.item_id for h in store.search("quokka")} == {i.id for i in newer[1:]}
    assert [h.item_id for h in store.search("quokka")] == [i.id for i in newer[1:]], "ranked"
    monkeypatch.setattr("taskerino.store.sqlite._search.RANKED_AT_MOST", 10)
    assert store.search("quokka")[0].item_id == best.id


def test_closing_the_store_ends_its_change_looker_and_settles_the_files(tmp_path: Path) -> None:
    # A copy of the data folder right after close must not see the WAL file vanish under
    # it: the thread that looks for changes has closed its connection by then. A few
    # stores, as the looker may be anywhere in its loop when the store closes.
    for k in range(5):
        path = tmp_path / f"t{k}.db"
        store = SQLiteStore(path)
        store.create_session(make_session())
        watch = store.watch([Topic.jobs()])
        time.sleep(3 * LOOK_SECONDS)  # the looker is in its loop
        assert path.with_name(path.name + "-wal").exists()  # open, in WAL mode
        store.close()
        assert not any(t.name == "store-changes" for t in threading.enumerate())
        assert not path.with_name(path.name + "-wal").exists()
        watch.close()
