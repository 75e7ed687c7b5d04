"""Connections, transactions and error translation, shared by every part of the PostgreSQL
store.

Connections come from a psycopg `ConnectionPool` (autocommit: a statement outside
`transaction()` is its own transaction). `transaction()` takes one connection from the
pool for the calling thread until the outermost block ends; nested blocks are savepoints.
One transaction at a time per store object, as the contract says; read-modify-write is
serialised against other processes by the row locks of `SELECT … FOR UPDATE`
(`session_for_update`), not by a lock on the whole database.

A statement that may be refused (a used id, a missing parent) runs inside a savepoint when a
transaction is open: PostgreSQL aborts the whole transaction on any error, and the contract
lets a caller catch the refusal and go on.

Reads outside a transaction take a pooled connection; those that read several tables run in
a `REPEATABLE READ READ ONLY` transaction, so a session and its children come from one
snapshot. Readers never wait for writers (MVCC).

Every failure of the server, of the network or of decoding a stored row becomes a
StorageError that names the database by its URL with the password hidden.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ...errors import NotFound, StorageError, TaskerinoError
from ..base import Transactional
from ..registry import redact
from ._schema import migrate, ranks_in_index

# What reading a stored row can raise besides the driver: decoding its JSON or owner text.
DECODE_FAILURES = (ValueError, TypeError, KeyError)
FAILURES = (psycopg.Error, PoolTimeout, PoolClosed, *DECODE_FAILURES)

POOL_SIZE = 8
CONNECT_SECONDS = 10

# A reference a row makes: (table, id, what to call it in NotFound).
Ref = tuple[str, str | None, str]
Query = LiteralString


def _may_be_refused(sql: str, refs: Sequence[Ref]) -> bool:
    """Whether a statement can break a constraint: an insert, or a write naming a row it
    refers to. The others (a heartbeat, a job's lease) need no savepoint: two round trips
    less, and they are most of what a team's recorders and workers write."""
    return bool(refs) or sql.lstrip()[:6].upper() == "INSERT"


def _password(url: str) -> str | None:
    """The URL's password (in its user part or as libpq's `?password=`), if any."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.password or next(iter(parse_qs(parts.query).get("password", [])), None)


log = logging.getLogger("taskerino.store")
_TOLD: set[str] = set()


def _say_once_no_rum(shown: str) -> None:
    """Log, once a process for each database, that its search runs without RUM."""
    if shown in _TOLD:
        return
    _TOLD.add(shown)
    log.warning(
        "the database %s has no RUM index (extension rum not installed on the server, or "
        "not allowed): search ranks every match from the table, slower on common words; "
        "to add it as a superuser: CREATE EXTENSION rum; CREATE INDEX search_items_rum ON "
        "search_items USING rum (tsv rum_tsvector_ops)",
        shown,
    )


class PostgresBase(Transactional):
    """The connection pool of one store object; every PostgreSQL part builds on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact(url)
        self._lock = threading.RLock()
        self._depth = 0
        self._owner_thread: int | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        # Whether search ranks in a RUM index (see `_schema`); set when the store opens.
        self.ranks_in_index = False
        self._pool = self._open()

    # --- opening ------------------------------------------------------------------------
    def _open(self) -> ConnectionPool:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_SECONDS) as db:
                migrate(db, self.shown)
                self.ranks_in_index = ranks_in_index(db)
            if not self.ranks_in_index:
                _say_once_no_rum(self.shown)
        except FAILURES as exc:
            raise self._failure(exc) from exc
        pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_SECONDS},
            # A call waits this long for a connection (the server gone): then StorageError.
            timeout=CONNECT_SECONDS,
            open=False,
            name="taskerino",
        )
        try:
            pool.open(wait=True, timeout=CONNECT_SECONDS * 3)
        except FAILURES as exc:
            pool.close()
            raise self._failure(exc) from exc
        return pool

    # --- errors -------------------------------------------------------------------------
    def _failure(self, exc: BaseException, *, writing: bool = False) -> StorageError:
        """The StorageError a user can act on, for an exception of the driver, the pool or
        the decoding of a row."""
        shown = self.shown
        text = " ".join(str(exc).split())
        if password := _password(self.url):
            text = text.replace(password, "***")  # were the driver ever to echo it
        text = text if len(text) <= 160 else text[:157] + "..."
        unchanged = "the change was not saved" if writing else "it was not modified"
        if isinstance(exc, PoolClosed) or self._closed:
            return StorageError(f"the store {shown} is closed")
        if isinstance(exc, pg_errors.TransactionRollback | pg_errors.LockNotAvailable):
            return StorageError(
                f"the database {shown} is busy ({text}): another client held what this "
                f"needed; try again ({unchanged})"
            )
        if isinstance(exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
            self._drop_broken()
            if isinstance(exc, pg_errors.DiskFull):
                return StorageError(
                    f"the database {shown} has no space left ({text}): free some ({unchanged})"
                )
            if isinstance(exc, pg_errors.InsufficientPrivilege):
                return StorageError(
                    f"the database {shown} refused access ({text}): check the user's rights"
                )
            return StorageError(
                f"cannot reach the database {shown} ({text}): check that PostgreSQL runs and "
                f"the URL is right ({unchanged})"
            )
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return StorageError(
                f"the database {shown} refused access ({text}): check the user's rights "
                f"({unchanged})"
            )
        if isinstance(exc, DECODE_FAILURES):
            return StorageError(
                f"the database {shown} holds a damaged row ({text}): restore it from a "
                f"backup; {unchanged}"
            )
        return StorageError(f"the database {shown} failed ({text}); {unchanged}")

    def _drop_broken(self) -> None:
        """After a connection failed (server restarted, network cut): let the pool close
        its idle connections that broke too, so that the next call does not fail the same
        way. Not checked on every checkout: that would cost a round trip per statement."""
        with contextlib.suppress(Exception):
            self._pool.check()

    def _refused(self, exc: psycopg.IntegrityError, refs: Sequence[Ref]) -> TaskerinoError:
        """NotFound for a reference to a missing row, else StorageError (an id in use)."""
        if isinstance(exc, pg_errors.ForeignKeyViolation):
            for table, key, what in refs:
                if key is not None and not self._row_exists(table, key):
                    return NotFound(f"no {what} {key!r}")
        text = " ".join(str(exc).split())
        return StorageError(
            f"the database {self.shown} refused the change ({text[:160]}): an id or index is "
            "already used, or a reference is broken; the change was not saved"
        )

    def _row_exists(self, table: str, key: str) -> bool:
        sql = f"SELECT 1 FROM {table} WHERE id = %s"
        with self._reading() as db:
            return db.execute(sql, (key,)).fetchone() is not None

    # --- transactions -------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            depth = self._depth
            if depth == 0:
                self._conn = self._checkout()
                self._owner_thread = threading.get_ident()
            conn = self._conn
            assert conn is not None
            block = conn.transaction()
            try:
                block.__enter__()
            except FAILURES as exc:
                self._end(depth)
                raise self._failure(exc, writing=True) from exc
            self._depth = depth + 1
            try:
                yield
            except BaseException as exc:
                try:
                    block.__exit__(type(exc), exc, exc.__traceback__)
                except psycopg.Error:
                    pass  # the connection broke: the server undoes the transaction
                finally:
                    self._end(depth)
                raise
            try:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                    # A statement failed inside and the caller went on: PostgreSQL would
                    # answer COMMIT with a silent rollback. Say so instead.
                    undone = self._undone()
                    block.__exit__(StorageError, undone, None)
                    raise undone
                block.__exit__(None, None, None)
            except psycopg.Error as exc:
                raise self._failure(exc, writing=True) from exc
            finally:
                self._end(depth)

    def _undone(self) -> StorageError:
        return StorageError(
            f"the database {self.shown} undid the transaction after an error inside it; "
            "the change was not saved"
        )

    def _checkout(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StorageError(f"the store {self.shown} is closed")
        try:
            return self._pool.getconn()
        except FAILURES as exc:
            raise self._failure(exc, writing=True) from exc

    def _end(self, depth: int) -> None:
        self._depth = depth
        if depth == 0:
            conn, self._conn, self._owner_thread = self._conn, None, None
            if conn is not None:
                self._pool.putconn(conn)

    def _inside_transaction(self) -> bool:
        """Whether the calling thread is inside `transaction()`."""
        return self._owner_thread == threading.get_ident()

    # --- statements ---------------------------------------------------------------------
    def _write(
        self, sql: Query, params: Sequence[Any] | dict[str, Any] = (), refs: Sequence[Ref] = ()
    ) -> int:
        """Run one writing statement (in the open transaction, or as its own); the number of
        rows it changed."""
        return self._run(sql, params, refs, returning=False)[0]

    def _write_returning(
        self, sql: Query, params: Sequence[Any] | dict[str, Any] = (), refs: Sequence[Ref] = ()
    ) -> list[Any]:
        """Like `_write`, for a statement with RETURNING: its rows."""
        return self._run(sql, params, refs, returning=True)[1]

    def _write_many(
        self, sql: Query, rows: Sequence[Sequence[Any]], refs: Sequence[Ref] = ()
    ) -> None:
        """Run one writing statement once for each of `rows`, all or none."""
        if not rows:
            return
        with self.transaction():
            conn = self._conn
            assert conn is not None
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(sql, rows)
            except psycopg.IntegrityError as exc:
                raise self._refused(exc, refs) from exc
            except FAILURES as exc:
                raise self._failure(exc, writing=True) from exc

    def _run(
        self,
        sql: Query,
        params: Sequence[Any] | dict[str, Any],
        refs: Sequence[Ref],
        *,
        returning: bool,
    ) -> tuple[int, list[Any]]:
        if self._inside_transaction():
            conn = self._conn
            assert conn is not None
            try:
                if not _may_be_refused(sql, refs):
                    cur = conn.execute(sql, params)
                    return cur.rowcount, cur.fetchall() if returning else []
                # A savepoint, so that a refused statement leaves the transaction usable.
                with conn.transaction():
                    cur = conn.execute(sql, params)
                    return cur.rowcount, cur.fetchall() if returning else []
            except psycopg.IntegrityError as exc:
                raise self._refused(exc, refs) from exc
            except FAILURES as exc:
                raise self._failure(exc, writing=True) from exc
        conn = self._checkout()
        try:
            cur = conn.execute(sql, params)
            return cur.rowcount, cur.fetchall() if returning else []
        except psycopg.IntegrityError as exc:
            raise self._refused(exc, refs) from exc
        except FAILURES as exc:
            raise self._failure(exc, writing=True) from exc
        finally:
            self._pool.putconn(conn)

    @contextmanager
    def _reading(self, *, snapshot: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection to read from, with every failure (decoding the rows included) turned
        into StorageError; with `snapshot`, several statements see one snapshot."""
        if self._inside_transaction():
            # This thread is inside transaction(): read its own writes.
            assert self._conn is not None
            try:
                yield self._conn
            except FAILURES as exc:
                raise self._failure(exc) from exc
            return
        conn = self._checkout()
        try:
            if snapshot:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn
            if snapshot:
                conn.execute("COMMIT")
        except FAILURES as exc:
            raise self._failure(exc) from exc
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):  # broken: the pool drops it
                    conn.execute("ROLLBACK")
            self._pool.putconn(conn)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pool.close()
