"""`SQLiteStore`: the parts of the SQLite store combined into one `Store`."""

from __future__ import annotations

from typing import Self

from ...errors import StorageError
from .._urls import url_path
from ..base import Store
from ._enrichment import SQLiteEnrichmentRows
from ._intents import SQLiteBlobIntents
from ._jobs import SQLiteJobQueue
from ._live import SQLiteLiveCoordination
from ._search import SQLiteSearchIndex
from ._sessions import SQLiteSessionRows
from ._settings import SQLiteSettings
from ._waiting import SQLiteWaiting


class SQLiteStore(
    SQLiteSessionRows,
    SQLiteLiveCoordination,
    SQLiteBlobIntents,
    SQLiteSettings,
    SQLiteJobQueue,
    SQLiteEnrichmentRows,
    SQLiteSearchIndex,
    SQLiteWaiting,
    Store,
):
    """The embedded store: one SQLite database file in WAL mode (`sqlite:` URLs)."""

    @classmethod
    def from_url(cls, url: str) -> Self:
        return cls(url_path(url, "sqlite"))

    def integrity_problems(self) -> list[str]:
        try:
            with self._reading() as db:
                problems = [
                    f"database: {r[0]}"
                    for r in db.execute("PRAGMA integrity_check").fetchall()
                    if r[0] != "ok"
                ]
                problems += [
                    f"database: row {r[1]} of {r[0]} refers to a missing {r[2]} row"
                    for r in db.execute("PRAGMA foreign_key_check").fetchall()
                ]
        except StorageError as exc:
            problems = [f"database: {exc}"]
        return problems
