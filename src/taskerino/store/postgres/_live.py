"""Live sessions, heartbeats, stats and commands in PostgreSQL (the `LiveCoordination`
part).

The contract has recorders poll `take_commands` (the keeper thread, five times a second);
there is no call that waits for a command, so LISTEN/NOTIFY would have nothing to wake.
The poll stays cheap instead: an index-only probe on a pooled connection, no write.
"""

from __future__ import annotations

import json

from ...errors import NotFound
from ...models import RecordingStats, from_dict, to_dict
from ...process import ProcessOwner
from ..base import LiveCoordination, LiveSession
from ._connection import PostgresBase


class PostgresLiveCoordination(PostgresBase, LiveCoordination):
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
            "UPDATE sessions SET recorder=%s WHERE id=%s",
            (owner.encode() if owner else None, session_id),
        )
        if changed == 0:
            raise NotFound(f"no session {session_id!r}")

    def heartbeat(self, session_id: str, at: float) -> None:
        changed = self._write("UPDATE sessions SET heartbeat=%s WHERE id=%s", (at, session_id))
        if changed == 0:
            raise NotFound(f"no session {session_id!r}")

    def write_stats(self, stats: RecordingStats) -> None:
        changed = self._write(
            "INSERT INTO recording_stats (session_id, data)"
            " SELECT id, %s FROM sessions WHERE id=%s"
            " ON CONFLICT (session_id) DO UPDATE SET data = excluded.data",
            (json.dumps(to_dict(stats)), stats.session_id),
        )
        if changed == 0:
            raise NotFound(f"no session {stats.session_id!r}")

    def read_stats(self, session_id: str) -> RecordingStats | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT data FROM recording_stats WHERE session_id=%s", (session_id,)
            ).fetchone()
            return from_dict(RecordingStats, json.loads(row[0])) if row else None

    def push_command(self, session_id: str, command: str) -> None:
        changed = self._write(
            "INSERT INTO session_commands (session_id, command)"
            " SELECT id, %s FROM sessions WHERE id=%s",
            (command, session_id),
        )
        if changed == 0:
            raise NotFound(f"no session {session_id!r}")

    def take_commands(self, session_id: str) -> list[str]:
        # A cheap read first: this is polled several times a second and most polls find
        # nothing to take.
        with self._reading() as db:
            pending = db.execute(
                "SELECT 1 FROM session_commands WHERE session_id=%s LIMIT 1", (session_id,)
            ).fetchone()
        if pending is None:
            return []
        # DELETE … RETURNING takes each row once: a second taker waits on the row locks,
        # then finds them gone.
        rows = self._write_returning(
            "DELETE FROM session_commands WHERE session_id=%s RETURNING seq, command",
            (session_id,),
        )
        return [command for _, command in sorted(rows)]
