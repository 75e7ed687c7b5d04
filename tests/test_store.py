"""Contract tests for the Store and BlobStore interfaces (run against every back end)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskerino.errors import InvalidInput, NotFound, StorageError
from taskerino.models import (
    Attachment,
    ContextItem,
    RecordingStats,
    Session,
    SessionScreenshot,
    SessionVideo,
    SessionVideoChunk,
    new_id,
)
from taskerino.process import ProcessOwner, current_owner
from taskerino.store import FolderBlobStore, SQLiteStore, Store
from taskerino.store.base import BlobIntent
from taskerino.store.media import MediaLibrary


def make_session(name: str = "s", start: str = "2026-01-01T00:00:00.000Z") -> Session:
    return Session(id=new_id(), name=name, start_time=start)


def make_attachment(digest: str) -> Attachment:
    return Attachment(new_id(), "image", "x.webp", "image/webp", 3, digest)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = SQLiteStore(tmp_path / "t.db")
    yield s
    s.close()


class TestStoreContract:
    def test_session_round_trip(self, store: Store) -> None:
        session = make_session("first")
        session.tags = ["a", "b"]
        store.create_session(session)
        att = store.add_attachment(make_attachment("a" * 64))
        store.add_screenshot(SessionScreenshot(new_id(), session.id, "t", 1.0, att.id, att.hash))
        store.add_context_item(ContextItem(new_id(), session.id, "t", 2.0, "note", "hi"))
        video = SessionVideo(new_id(), session.id, 640, 360, 15, ["test:red"], "passthrough")
        store.save_video(video)
        store.add_video_chunk(SessionVideoChunk(new_id(), video.id, att.id, 0, 0, 1, 15, 3))
        loaded = store.get_session(session.id)
        assert loaded.name == "first" and loaded.tags == ["a", "b"]
        assert len(loaded.screenshots) == 1 and loaded.screenshots[0].attachment_id == att.id
        assert loaded.context_items[0].content == "hi"
        assert loaded.video is not None and loaded.video.chunks[0].frames == 15
        assert {a.id for a in store.attachments_for(session.id)} == {att.id}

    def test_unknown_session_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.get_session("nope")
        with pytest.raises(NotFound):
            store.update_session(make_session())

    def test_exception_in_transaction_leaves_nothing(self, store: Store) -> None:
        session = make_session()
        with pytest.raises(RuntimeError), store.transaction():
            store.create_session(session)
            store.add_attachment(make_attachment("b" * 64))
            raise RuntimeError("boom")
        assert store.list_sessions() == []
        assert store.attachment_hashes() == set()

    def test_nested_transaction_rolls_back_only_inner(self, store: Store) -> None:
        outer, inner = make_session("outer"), make_session("inner")
        with store.transaction():
            store.create_session(outer)
            with pytest.raises(ValueError), store.transaction():
                store.create_session(inner)
                raise ValueError
            with store.transaction():
                store.set_setting("k", {"v": 1})
        assert [s.name for s in store.list_sessions()] == ["outer"]
        assert store.get_setting("k") == {"v": 1}

    def test_attachments_deduplicate_by_hash(self, store: Store) -> None:
        first = store.add_attachment(make_attachment("c" * 64))
        second = store.add_attachment(make_attachment("c" * 64))
        assert first.id == second.id
        assert store.get_attachment(first.id).hash == "c" * 64
        with pytest.raises(NotFound):
            store.get_attachment("missing")

    def test_list_newest_first_with_filters(self, store: Store) -> None:
        for i in range(5):
            s = make_session(f"name {i}", f"2026-01-0{i + 1}T00:00:00.000Z")
            s.status = "completed" if i % 2 else "active"
            store.create_session(s)
        rows = store.list_sessions()
        assert [r.name for r in rows] == [f"name {i}" for i in reversed(range(5))]
        assert {r.name for r in store.list_sessions(status="completed")} == {"name 1", "name 3"}
        assert [r.name for r in store.list_sessions(query="E 3")] == ["name 3"]
        assert store.list_sessions(query="100%_") == []
        assert len(store.list_sessions(limit=2)) == 2

    def test_commands_and_stats(self, store: Store) -> None:
        s = make_session()
        store.create_session(s)
        assert store.take_commands(s.id) == []
        store.push_command(s.id, "pause")
        store.push_command(s.id, "end")
        assert store.take_commands(s.id) == ["pause", "end"]
        assert store.take_commands(s.id) == []
        assert store.read_stats(s.id) is None
        store.write_stats(RecordingStats(s.id, frames_captured=7))
        stats = store.read_stats(s.id)
        assert stats is not None and stats.frames_captured == 7

    def test_live_sessions_and_recorder(self, store: Store) -> None:
        s = make_session()
        store.create_session(s)
        store.set_recorder(s.id, current_owner())
        store.heartbeat(s.id, 123.0)
        (live,) = store.live_sessions()
        assert live.owner == current_owner() and live.heartbeat == 123.0
        s.status = "completed"
        store.update_session(s)
        assert store.live_sessions() == []

    def test_blob_intents(self, store: Store) -> None:
        owner = ProcessOwner("h", 1, "2")
        store.add_blob_intent(BlobIntent("d" * 64, owner))
        assert store.blob_intents() == [BlobIntent("d" * 64, owner)]
        store.remove_blob_intent("d" * 64, owner)
        assert store.blob_intents() == []

    def test_healthy_database_has_no_problems(self, store: Store) -> None:
        assert store.integrity_problems() == []


def test_corrupt_database_is_reported_not_overwritten(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    with pytest.raises(StorageError, match="not a Taskerino database"):
        SQLiteStore(db)
    assert db.read_bytes() == before


def test_truncated_database_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = SQLiteStore(db)
    for i in range(200):
        store.create_session(make_session(f"s{i}" * 50))
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    try:
        truncated = SQLiteStore(db)
    except StorageError:
        return  # refused at open: reported
    problems = truncated.integrity_problems()
    truncated.close()
    assert problems, "a truncated database must be reported by integrity_problems"


def _writer(path: str, session_id: str, n: int) -> None:
    store = SQLiteStore(Path(path))
    for _ in range(n):
        with store.transaction():
            s = store.session_for_update(session_id)
            s.total_paused += 1
            store.update_session(s)
    store.close()


def test_two_processes_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    s = make_session()
    store.create_session(s)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), s.id, 200)) for _ in range(2)]
    for p in procs:
        p.start()
    _writer(str(path), s.id, 200)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert store.get_session(s.id).total_paused == 600
    store.close()


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


class TestFolderBlobStore:
    def test_put_is_content_addressed(self, tmp_path: Path) -> None:
        blobs = FolderBlobStore(tmp_path / "blobs")
        src = tmp_path / "f"
        src.write_bytes(b"hello")
        digest = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        assert blobs.put_file(src, digest) == 5
        assert blobs.put_file(src, digest) == 5  # the same content is kept once
        assert list(blobs.digests()) == [digest]
        with blobs.open(digest) as f:
            assert f.read() == b"hello"
        blobs.delete(digest)
        assert not blobs.exists(digest)
        with pytest.raises(NotFound):
            blobs.open(digest)

    @pytest.mark.parametrize("bad", ["../../etc/passwd", "a" * 63, "A" * 64, "x/../" + "a" * 60])
    def test_names_never_become_paths(self, tmp_path: Path, bad: str) -> None:
        blobs = FolderBlobStore(tmp_path / "blobs")
        with pytest.raises(InvalidInput):
            blobs.local_path(bad)

    def test_stale_temp_files_of_dead_writers_are_removed(self, tmp_path: Path) -> None:
        blobs = FolderBlobStore(tmp_path / "blobs")
        me = current_owner()
        mine = blobs.tmp / f"{me.pid}-{me.token}-abc"
        dead = blobs.tmp / "999999999-1-abc"
        mine.write_bytes(b"1")
        dead.write_bytes(b"2")
        assert blobs.remove_stale_temp() == [dead.name]
        assert mine.exists() and not dead.exists()


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
