"""`PostgresStore`: the parts of the PostgreSQL store combined into one `Store`."""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from ...errors import InvalidInput
from ..base import Store
from ._connection import FAILURES
from ._enrichment import PostgresEnrichmentRows
from ._intents import PostgresBlobIntents
from ._jobs import PostgresJobQueue
from ._live import PostgresLiveCoordination
from ._search import PostgresSearchIndex
from ._sessions import PostgresSessionRows
from ._settings import PostgresSettings
from ._waiting import PostgresWaiting


class PostgresStore(
    PostgresSessionRows,
    PostgresLiveCoordination,
    PostgresBlobIntents,
    PostgresSettings,
    PostgresJobQueue,
    PostgresEnrichmentRows,
    PostgresSearchIndex,
    PostgresWaiting,
    Store,
):
    """The team profile's store: one PostgreSQL database (`postgresql:` and `postgres:`
    URLs, as libpq reads them: `postgresql://user:password@host:port/database?options`)."""

    served = True

    @classmethod
    def from_url(cls, url: str) -> Self:
        from ..registry import redact

        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as exc:
            raise InvalidInput(f"malformed database URL {redact(url)!r}: {exc}") from exc
        names_nothing = not (parts.netloc or parts.path.strip("/") or parts.query)
        if parts.scheme.lower() not in ("postgresql", "postgres") or names_nothing:
            raise InvalidInput(
                f"malformed database URL {redact(url)!r}: expected "
                "postgresql://user:password@host:port/database"
            )
        return cls(url)

    def integrity_problems(self) -> list[str]:
        problems: list[str] = []
        try:
            with self._reading() as db:
                # What a database can break that its own constraints do not guard: the
                # counts kept by triggers.
                for session_id, column in db.execute(
                    "SELECT s.id, 'screenshot_count' FROM sessions s WHERE s.screenshot_count"
                    " <> (SELECT count(*) FROM screenshots c WHERE c.session_id = s.id)"
                    " UNION ALL SELECT s.id, 'audio_segment_count' FROM sessions s"
                    " WHERE s.audio_segment_count"
                    " <> (SELECT count(*) FROM audio_segments a WHERE a.session_id = s.id)"
                ).fetchall():
                    problems.append(f"database: session {session_id} has a wrong {column}")
        except FAILURES as exc:
            problems.append(f"database: {self._failure(exc)}")
        except Exception as exc:  # a StorageError from the pool (closed, unreachable)
            problems.append(f"database: {exc}")
        return problems
