"""What is particular to the SQLite store and the folder blob store, and MediaLibrary over them.

The interface contracts every back end keeps are tested in tests/contract/.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskerino.errors import StorageError
from taskerino.models import Session, new_id
from taskerino.process import ProcessOwner, current_owner
from taskerino.store import FolderBlobStore, SQLiteStore, Store
from taskerino.store.base import BlobIntent
from taskerino.store.media import MediaLibrary
from taskerino.store.sqlite import DB_VERSION
from taskerino.store.sqlite._schema import MIGRATIONS


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
    assert DB_VERSION == len(MIGRATIONS) == 2
