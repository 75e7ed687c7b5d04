"""A damaged SQLite database is reported as StorageError, never a traceback, never rewritten."""

from __future__ import annotations

import functools
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from taskerino.errors import NotFound, StorageError
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
from taskerino.process import current_owner
from taskerino.store import SQLiteStore

VARIANTS = 30


def build_database(path: Path, sessions: int = 40) -> list[str]:
    """A database with sessions and every kind of child row; returns the session ids."""
    store = SQLiteStore(path)
    ids = []
    for i in range(sessions):
        session = Session(
            id=new_id(),
            name=f"session {i} " + "x" * (i % 7) * 20,
            start_time=f"2026-01-{i % 28 + 1:02d}T00:00:00.000Z",
            tags=[f"tag{i % 3}"],
        )
        with store.transaction():
            store.create_session(session)
            att = store.add_attachment(
                Attachment(new_id(), "image", "a.webp", "image/webp", 10, f"{i:064x}")
            )
            for k in range(3):
                store.add_screenshot(
                    SessionScreenshot(new_id(), session.id, "t", float(k), att.id, att.hash)
                )
            store.add_context_item(ContextItem(new_id(), session.id, "t", 1.0, "note", "n" * 50))
            video = SessionVideo(new_id(), session.id, 640, 360, 15, ["display:1"], "grid")
            store.save_video(video)
            store.add_video_chunk(SessionVideoChunk(new_id(), video.id, att.id, 0, 0, 1, 15, 10))
            store.set_recorder(session.id, current_owner())
            store.write_stats(RecordingStats(session.id, frames_captured=i))
        ids.append(session.id)
    store.close()
    assert not Path(f"{path}-wal").exists(), "a clean close leaves the whole database in one file"
    return ids


def exercise(path: Path, ids: list[str]) -> str:
    """Open and read; only StorageError (or NotFound for a row the damage hid) may come out.

    Returns what happened: 'refused' at open, 'failed' on a read, 'reported' by
    integrity_problems, or 'clean'.
    """
    try:
        store = SQLiteStore(path)
    except StorageError:
        return "refused"
    outcome = "clean"
    try:
        reads: list[Callable[[], object]] = [
            store.list_sessions,
            lambda: store.list_sessions(query="session 1"),
            store.live_sessions,
            store.attachment_hashes,
        ]
        reads += [functools.partial(store.get_session, i) for i in ids]
        reads += [functools.partial(store.read_stats, i) for i in ids[:5]]
        for read in reads:
            try:
                read()
            except StorageError as exc:
                assert str(path) in str(exc), exc
                outcome = "failed"
            except NotFound:
                outcome = "failed"
        problems = store.integrity_problems()
        if problems and outcome == "clean":
            outcome = "reported"
    finally:
        store.close()
    return outcome


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[str]]:
    path = tmp_path_factory.mktemp("pristine") / "taskerino.db"
    ids = build_database(path)
    return path.read_bytes(), ids


def test_byte_flips_never_escape_as_anything_but_storage_error(
    tmp_path: Path, pristine: tuple[bytes, list[str]]
) -> None:
    data, ids = pristine
    page = 4096
    outcomes: dict[str, int] = {}
    for seed in range(VARIANTS):
        rng = random.Random(seed)
        damaged = bytearray(data)
        # A few flips inside one page, or scattered over the file.
        if seed % 2:
            start = rng.randrange(len(data) // page) * page
            spots = [start + rng.randrange(page) for _ in range(rng.randint(1, 16))]
        else:
            spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 64))]
        for spot in spots:
            damaged[spot] ^= rng.randint(1, 255)
        path = tmp_path / f"damaged-{seed}.db"
        path.write_bytes(damaged)
        outcome = exercise(path, ids)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert path.read_bytes() == damaged, f"variant {seed}: the damaged file was modified"
    # Most variants must have been noticed, or this test would prove nothing.
    assert outcomes.get("clean", 0) <= VARIANTS // 2, outcomes


def test_truncated_database(tmp_path: Path, pristine: tuple[bytes, list[str]]) -> None:
    data, ids = pristine
    for cut in (len(data) // 2, 4096 + 17, 100):
        path = tmp_path / f"truncated-{cut}.db"
        path.write_bytes(data[:cut])
        assert exercise(path, ids) != "clean", cut
        assert path.read_bytes() == data[:cut]


def test_directory_in_place_of_the_database(tmp_path: Path) -> None:
    path = tmp_path / "taskerino.db"
    path.mkdir()
    (path / "keep").write_text("mine")
    with pytest.raises(StorageError, match="is a directory") as caught:
        SQLiteStore(path)
    assert str(path) in str(caught.value)
    assert [p.name for p in path.iterdir()] == ["keep"]


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(StorageError, match="not a Taskerino database"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def test_database_of_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=999")
    db.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="newer version"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def damage_with_sql(path: Path, *sql: str) -> bytes:
    db = sqlite3.connect(path, isolation_level=None)
    for statement in sql:
        db.execute(statement)
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("damage", "read", "message"),
    [
        (
            ["UPDATE videos SET sources = CAST(x'c3ff28' AS TEXT)"],
            "get_session",
            "decode",
        ),
        (["ALTER TABLE screenshots DROP COLUMN analysis_status"], "get_session", "no such column"),
        (["DROP TABLE context_items"], "get_session", "no such table"),
        (["UPDATE sessions SET config = '{\"fps\": 1'"], "get_session", "damaged"),
        (["UPDATE sessions SET tags = '5'"], "list_sessions", "damaged"),
        (["UPDATE sessions SET schema_version = -3"], "get_session", "damaged"),
        (["UPDATE sessions SET recorder = 'nobody'"], "live_sessions", "damaged"),
        (["UPDATE recording_stats SET data = '[1, 2]'"], "read_stats", "damaged"),
        (["UPDATE sessions SET name = CAST(x'80' AS TEXT)"], "list_sessions", "decode"),
    ],
)
def test_damaged_rows_and_schema_are_storage_errors(
    tmp_path: Path, damage: list[str], read: str, message: str
) -> None:
    path = tmp_path / "t.db"
    (session_id,) = build_database(path, sessions=1)
    before = damage_with_sql(path, *damage)
    store = SQLiteStore(path)
    calls: dict[str, Callable[[], object]] = {
        "get_session": lambda: store.get_session(session_id),
        "list_sessions": store.list_sessions,
        "live_sessions": store.live_sessions,
        "read_stats": lambda: store.read_stats(session_id),
    }
    with pytest.raises(StorageError, match=message) as caught:
        calls[read]()
    text = str(caught.value)
    assert str(path) in text and "restore it from a backup" in text
    # Inside a transaction (the write connection) the same read fails the same way.
    with pytest.raises(StorageError, match=message), store.transaction():
        calls[read]()
    assert isinstance(store.integrity_problems(), list)
    store.close()
    assert path.read_bytes() == before


def test_integrity_problems_reports_damage(
    tmp_path: Path, pristine: tuple[bytes, list[str]]
) -> None:
    data, _ = pristine
    path = tmp_path / "t.db"
    damaged = bytearray(data)
    # Scribble over the middle of the file, away from the first page and its schema.
    middle = len(data) // 2 // 4096 * 4096
    damaged[middle : middle + 4096] = bytes(range(256)) * 16
    path.write_bytes(damaged)
    store = SQLiteStore(path)
    problems = store.integrity_problems()
    store.close()
    assert problems and all(p.startswith("database: ") for p in problems)
