"""Live sessions, heartbeats, stats and commands in SQLite (the `LiveCoordination` part)."""

from __future__ import annotations

import json

from ...errors import NotFound
from ...models import RecordingStats, from_dict, to_dict
from ...process import ProcessOwner
from ..base import LiveCoordination, LiveSession
from ._connection import SQLiteBase

_SESSION_EXISTS = "EXISTS (SELECT 1 FROM sessions WHERE id=?)"


class SQLiteLiveCoordination(SQLiteBase, LiveCoordination):
    def live_sessions(self) -> list[LiveSession]:
        with self._reading() as db:
            return [
                LiveSession(r[0], r[1], ProcessOwner.decode(r[2]) if r[2] else None, r[3])
                for r in db.execute(
                    "SELECT id, status, recorder, heartbeat FROM sessions"
                    " WHERE status IN ('active', 'paused')"
                ).fetchall()
            ]

    def set_recorder(self, session_id: str, owner: ProcessOwner | None) -> None:
        changed = self._write(
            "UPDATE sessions SET recorder=? WHERE id=?",
            (owner.encode() if owner else None, session_id),
        )
        if changed == 0:
            raise NotFound(f"no session {session_id!r}")

    def heartbeat(self, session_id: str, at: float) -> None:
        changed = self._write("UPDATE sessions SET heartbeat=? WHERE id=?", (at, session_id))
        if changed == 0:
            raise NotFound(f"no session {session_id!r}")

    def write_stats(self, stats: RecordingStats) -> None:
        changed = self._write(
            "INSERT OR REPLACE INTO recording_stats (session_id, data)"
            f" SELECT ?, ? WHERE {_SESSION_EXISTS}",
            (stats.session_id, json.dumps(to_dict(stats)), stats.session_id),
        )
        if changed == 0:
            raise NotFound(f"no session {stats.session_id!r}")

    def read_stats(self, session_id: str) -> RecordingStats | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT data FROM recording_stats WHERE session_id=?", (session_id,)
            ).fetchone()
            return from_dict(RecordingStats, json.loads(row[0])) if row else None

    def push_command(self, session_id: str, command: str) -> None:
        changed = self._write(
            "INSERT INTO session_commands (session_id, command)"
            f" SELECT ?, ? WHERE {_SESSION_EXISTS}",
            (session_id, command, session_id),
        )
        if changed == 0:
            raise NotFound(f"no session {session_id!r}")

    def take_commands(self, session_id: str) -> list[str]:
        # A cheap read first, on this thread's own connection: this is polled several times
        # a second and must not wait for the writer when there is nothing to take.
        with self._reading() as db:
            pending = db.execute(
                "SELECT 1 FROM session_commands WHERE session_id=? LIMIT 1", (session_id,)
            ).fetchone()
        if pending is None:
            return []
        rows = self._write_returning(
            "DELETE FROM session_commands WHERE session_id=? RETURNING seq, command",
            (session_id,),
        )
        return [command for _, command in sorted(rows)]
