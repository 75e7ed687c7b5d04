"""Waiting for changes in SQLite (the `Waiting` part).

SQLite has no notifications between processes, but `PRAGMA data_version` on a connection
changes whenever another connection (of this process or another) commits to the database,
and reading it costs microseconds (the WAL index in shared memory). One thread per store
object reads it on a connection of its own every `LOOK_SECONDS` while a watch is open, and
wakes every watch when it changed: prompt, but not told apart by topic (an embedded store
has few writers, all on one machine). The thread starts with the first watch (which reads
the first version before it returns, so nothing committed after it goes unseen) and ends
when the last watch closes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ...errors import StorageError
from ..base import Waiting
from ..watch import Topic, Watch, Watchers
from ._connection import DB_FAILURES, SQLiteBase

log = logging.getLogger("taskerino.store")

LOOK_SECONDS = 0.1


class SQLiteWaiting(SQLiteBase, Waiting):
    def __init__(self, path: Path) -> None:
        self._watchers = Watchers()
        self._looker: threading.Thread | None = None
        self._looker_lock = threading.Lock()
        super().__init__(path)

    def watch(self, topics: Sequence[Topic]) -> Watch:
        if self._closed:
            raise StorageError(f"the store {self.path} is closed")
        watch = self._watchers.add(topics)
        with self._looker_lock:
            if self._looker is None:
                # The first version is read here, before this returns: a commit after it
                # changes what the thread reads next.
                db, last = self._first_look()
                self._looker = threading.Thread(
                    target=self._look, args=(db, last), name="store-changes", daemon=True
                )
                self._looker.start()
        return watch

    def _first_look(self) -> tuple[sqlite3.Connection | None, int | None]:
        db = None
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, timeout=5.0, check_same_thread=False
            )
            return db, int(db.execute("PRAGMA data_version").fetchone()[0])
        except DB_FAILURES as exc:
            log.debug("cannot look for changes in %s: %s", self.path, exc)
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            return None, None

    def _look(self, db: sqlite3.Connection | None, last: int | None) -> None:
        try:
            while True:
                with self._looker_lock:
                    if self._closed or not self._watchers.current():
                        self._looker = None
                        return
                time.sleep(LOOK_SECONDS)
                try:
                    if db is None:
                        db, last = self._first_look()
                        if db is not None:
                            self._watchers.fire()  # changes may have gone unseen meanwhile
                        continue
                    version = int(db.execute("PRAGMA data_version").fetchone()[0])
                except DB_FAILURES as exc:
                    # Nothing to report to: the waits run to their timeouts meanwhile.
                    log.debug("cannot look for changes in %s: %s", self.path, exc)
                    if db is not None:
                        with contextlib.suppress(sqlite3.Error):
                            db.close()
                    db = None
                else:
                    if version != last:
                        last = version
                        self._watchers.fire()
        finally:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    def close(self) -> None:
        self._watchers.close()  # the thread sees no watch left and ends
        with self._looker_lock:
            looker = self._looker
        if looker is not None and looker is not threading.current_thread():
            # Its connection is closed before the store says it is: the last connection
            # to close removes the WAL file, which must not happen under a copy of the
            # folder made once the store is closed.
            looker.join(timeout=10 * LOOK_SECONDS)
        super().close()
