"""Connections, transactions and error translation, shared by every part of the SQLite store.

One write connection per store object does every write, guarded by a lock: SQLite allows
one writer at a time anyway, and `BEGIN IMMEDIATE` makes every transaction take the
database's write lock up front, so a read-modify-write inside `transaction()` is serialised
against other processes too. Nested transactions are savepoints.

Reads go through a connection of the reading thread's own, in a deferred transaction so
that a session and its children come from one snapshot; in WAL mode they never wait for the
writer. The thread inside `transaction()` is the exception: its reads must see its own
uncommitted writes, so they use the write connection.

Every failure of SQLite, of the file, or of decoding a stored row becomes a StorageError
that names the file and says what to do; a damaged database is reported, never rewritten.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import NotFound, StorageError, TaskerinoError
from ..base import Transactional
from ._schema import DB_VERSION, MIGRATIONS, statements

# What reading a damaged database can raise: SQLite's errors (also "Could not decode to
# UTF-8 column"), the file's, and those of decoding a row's JSON or owner text.
DB_FAILURES = (sqlite3.Error, OSError, ValueError, TypeError, KeyError)

_MAGIC = b"SQLite format 3\x00"

# The write connection's page cache, in KiB. SQLite's default (2 MB) fills as the database
# grows, which it does all through a recording: the cache grew with every audio segment's
# rows, some 0.6 kB each, for hours (spec §10: memory flat over a long recording). Writes
# touch few pages, the roots and right-hand edges of the B-trees they append to; a page
# not in the cache is read back from the system's file cache.
WRITE_CACHE_KIB = 256

# A reference a row makes: (table, id, what to call it in NotFound).
Ref = tuple[str, str | None, str]


class _Reader:
    """A thread's read connection. Closed when its thread ends (the thread-local that holds
    it goes away) or when the store closes, whichever comes first."""

    __slots__ = ("__weakref__", "db")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db


class SQLiteBase(Transactional):
    """The connections of one store object; every SQLite part builds on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._writer_thread: int | None = None
        self._closed = False
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._readers_lock = threading.Lock()
        self._db = self._open()

    # --- opening ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )

    def _open(self) -> sqlite3.Connection:
        self._check_file()
        try:
            db = self._connect()
        except DB_FAILURES as exc:
            raise self._failure(exc) from exc
        try:
            self._prepare(db)
            db.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
        except BaseException as exc:
            db.close()
            if isinstance(exc, DB_FAILURES):
                raise self._failure(exc) from exc
            raise
        return db

    def _check_file(self) -> None:
        path = self.path
        try:
            if path.is_dir():
                raise StorageError(
                    f"the database {path} is a directory, not a file: move it aside or use "
                    "another data folder; it was not modified"
                )
            if not path.exists() or path.stat().st_size == 0:
                return
            with path.open("rb") as f:
                magic = f.read(len(_MAGIC))
        except OSError as exc:
            raise StorageError(
                f"cannot read the database {path} ({exc.strerror or exc}): check its "
                "permissions; it was not modified"
            ) from exc
        if magic != _MAGIC:
            raise StorageError(
                f"{path} is not a Taskerino database (damaged, or another kind of file): "
                "restore it from a backup or move it aside; it was not modified"
            )

    def _prepare(self, db: sqlite3.Connection) -> None:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._switch_to_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > DB_VERSION:
            raise StorageError(
                f"the database {self.path} was written by a newer version of Taskerino "
                f"(schema {version}, this one knows {DB_VERSION}): upgrade Taskerino; "
                "it was not modified"
            )
        if version < DB_VERSION:
            self._migrate(db)

    def _switch_to_wal(self, db: sqlite3.Connection) -> None:
        # Switching a new database to WAL needs an exclusive lock and SQLite answers "locked"
        # at once, without waiting, when another process opens it at the same moment.
        for attempt in range(50):
            try:
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.02 * (attempt + 1))
        if mode != "wal":
            raise StorageError(
                f"cannot switch the database {self.path} to WAL mode (it stays {mode}): "
                "keep the data folder on a local disk"
            )

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, DB_VERSION):
                for statement in statements(MIGRATIONS[step]):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={DB_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # --- errors -------------------------------------------------------------------------
    def _failure(self, exc: BaseException, *, writing: bool = False) -> StorageError:
        """The StorageError a user can act on, for an exception from SQLite, the file or
        the decoding of a row."""
        path = self.path
        text = str(exc) if len(str(exc)) <= 160 else str(exc)[:157] + "..."
        unchanged = "the change was not saved" if writing else "it was not modified"
        code = getattr(exc, "sqlite_errorname", None) or ""
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
            return StorageError(f"the store {path} is closed")
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StorageError(
                f"the database {path} is busy ({text}): another program held it too long; "
                f"try again ({unchanged})"
            )
        if code == "SQLITE_FULL":
            return StorageError(
                f"the database {path} or its disk is full ({text}): free some space ({unchanged})"
            )
        if code.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
            return StorageError(
                f"cannot write the database {path} ({text}): check that it and its folder "
                f"are writable ({unchanged})"
            )
        if code.startswith("SQLITE_CANTOPEN"):
            return StorageError(
                f"cannot open the database {path} ({text}): check that its folder exists "
                "and is writable"
            )
        if code.startswith("SQLITE_IOERR"):
            return StorageError(
                f"cannot read or write the database {path} ({text}): check the disk ({unchanged})"
            )
        if isinstance(exc, OSError):
            return StorageError(
                f"cannot use the database {path} ({exc.strerror or exc}): check the file "
                f"and its folder ({unchanged})"
            )
        return StorageError(
            f"the database {path} is damaged ({text}): restore it from a backup or move it "
            f"aside; {unchanged}"
        )

    def _refused(self, exc: sqlite3.IntegrityError, refs: Sequence[Ref]) -> TaskerinoError:
        """NotFound for a reference to a missing row, else StorageError (an id in use)."""
        text = str(exc)
        if "FOREIGN KEY" in text:
            for table, key, what in refs:
                if key is not None and not self._row_exists(table, key):
                    return NotFound(f"no {what} {key!r}")
        return StorageError(
            f"the database {self.path} refused the change ({text}): an id or index is "
            "already used, or a reference is broken; the change was not saved"
        )

    def _row_exists(self, table: str, key: str) -> bool:
        return self._db.execute(f"SELECT 1 FROM {table} WHERE id=?", (key,)).fetchone() is not None

    # --- transactions -------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            depth = self._depth
            name = f"sp{depth}"
            self._begin(depth, name)
            self._depth += 1
            if depth == 0:
                self._writer_thread = threading.get_ident()
            try:
                yield
            except BaseException:
                self._end(depth)
                self._rollback(depth, name)
                raise
            self._end(depth)
            self._commit(depth, name)

    def _inside_transaction(self) -> bool:
        """Whether the calling thread is inside `transaction()`."""
        return self._writer_thread == threading.get_ident()

    def _end(self, depth: int) -> None:
        self._depth = depth
        if depth == 0:
            self._writer_thread = None

    def _begin(self, depth: int, name: str) -> None:
        if self._closed:
            raise StorageError(f"the store {self.path} is closed")
        try:
            self._db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        except DB_FAILURES as exc:
            raise self._failure(exc, writing=True) from exc

    def _commit(self, depth: int, name: str) -> None:
        if not self._db.in_transaction:
            raise self._undone()
        try:
            self._db.execute("COMMIT" if depth == 0 else f"RELEASE {name}")
        except DB_FAILURES as exc:
            self._rollback(depth, name)
            raise self._failure(exc, writing=True) from exc

    def _rollback(self, depth: int, name: str) -> None:
        if not self._db.in_transaction:
            return  # SQLite already undid the whole transaction (disk full, I/O error)
        try:
            if depth == 0:
                self._db.execute("ROLLBACK")
            else:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
        except sqlite3.Error:
            # Undo everything rather than leave the inner block's writes for the outer
            # block to commit; the outer block then fails (see `_undone`).
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _undone(self) -> StorageError:
        return StorageError(
            f"the database {self.path} undid the transaction after an error inside it; "
            "the change was not saved"
        )

    # --- statements ---------------------------------------------------------------------
    def _write(self, sql: str, params: Sequence[Any] = (), refs: Sequence[Ref] = ()) -> int:
        """Run one writing statement (in the open transaction, or in its own); the number
        of rows it changed."""
        with self._lock:
            if self._depth:
                return self._execute(sql, params, refs).rowcount
            with self.transaction():
                return self._execute(sql, params, refs).rowcount

    def _write_returning(
        self, sql: str, params: Sequence[Any] = (), refs: Sequence[Ref] = ()
    ) -> list[Any]:
        """Like `_write`, for a statement with RETURNING: its rows."""
        with self._lock:
            if self._depth:
                return self._execute(sql, params, refs).fetchall()
            with self.transaction():
                return self._execute(sql, params, refs).fetchall()

    def _write_many(
        self, sql: str, rows: Sequence[Sequence[Any]], refs: Sequence[Ref] = ()
    ) -> None:
        """Run one writing statement once for each of `rows`, all or none (executemany
        keeps the rows before a failing one: the savepoint undoes them)."""
        with self.transaction():
            if not self._db.in_transaction:
                raise self._undone()
            try:
                self._db.executemany(sql, rows)
            except sqlite3.IntegrityError as exc:
                raise self._refused(exc, refs) from exc
            except DB_FAILURES as exc:
                raise self._failure(exc, writing=True) from exc

    def _execute(self, sql: str, params: Sequence[Any], refs: Sequence[Ref]) -> sqlite3.Cursor:
        """A statement inside the open transaction (the caller holds the lock)."""
        if not self._db.in_transaction:
            raise self._undone()
        try:
            return self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            # A failed statement undoes itself in SQLite: the transaction goes on unharmed.
            raise self._refused(exc, refs) from exc
        except DB_FAILURES as exc:
            raise self._failure(exc, writing=True) from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for a multi-statement read from one snapshot, with every failure
        (decoding the rows included) turned into StorageError."""
        if self._inside_transaction():
            # This thread is inside transaction(): read its own writes, under its lock.
            try:
                yield self._db
            except DB_FAILURES as exc:
                raise self._failure(exc) from exc
            return
        try:
            db = self._reader()
            db.execute("BEGIN")
        except DB_FAILURES as exc:
            raise self._failure(exc) from exc
        try:
            yield db
        except DB_FAILURES as exc:
            raise self._failure(exc) from exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is not None:
            return reader.db
        with self._readers_lock:
            if self._closed:
                raise StorageError(f"the store {self.path} is closed")
            db = self._connect()
            try:
                db.execute("PRAGMA query_only=ON")
                db.execute("PRAGMA busy_timeout=30000")
            except BaseException:
                db.close()
                raise
            reader = _Reader(db)
            weakref.finalize(reader, db.close)
            self._readers.add(reader)
        self._local.reader = reader
        return db

    def close(self) -> None:
        with self._lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            for reader in list(self._readers):
                reader.db.close()
            self._db.close()
