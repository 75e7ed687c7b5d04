"""Enrichment jobs in PostgreSQL (the `JobQueue` part).

A claim is one statement: it locks the job due first with `FOR UPDATE SKIP LOCKED`, so
workers on any number of machines each take a different job without waiting for each
other, and marks it running under the claimer's lease. The lease fence is in each later
statement's WHERE clause (`lease_owner = … AND lease_until > …`), so a worker whose lease
ran out changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import InvalidInput, LeaseLost, NotFound
from ...models import Job, JobState, new_id, utc_iso
from ..base import Backoff, JobQueue
from ..sqlite._jobs import _at_least_one, _positive, _values
from ._connection import PostgresBase

_COLUMNS = (
    "id, kind, session_id, state, attempt, lease_owner, lease_until, run_at, last_error,"
    " created_at, finished_at"
)
_HELD = "state = 'running' AND lease_owner = %(owner)s AND lease_until > %(now)s"
_NO_LIMIT = 2**31 - 1

# Jobs whose workers kept dying on them are failed; then the due job first (the first
# queued one and the first expired running one, each found by an index walk, then the
# earlier of the two) is claimed. The two steps share the statement's snapshot, so the
# second never claims a job the first fails.
_CLAIM = f"""
WITH expired AS (
    UPDATE jobs SET state = 'failed', finished_at = %(iso)s, lease_owner = NULL,
        lease_until = NULL, last_error = 'attempt ' || attempt || ' ran out of its lease:'
        || ' the worker stopped without finishing'
        || coalesce(' (before: ' || last_error || ')', '')
    WHERE seq IN (SELECT seq FROM jobs WHERE state = 'running' AND lease_until <= %(now)s
        AND attempt >= %(max)s {{kinds}} FOR UPDATE SKIP LOCKED)
    RETURNING seq
), queued AS (
    SELECT seq, run_at FROM jobs WHERE state = 'queued' AND run_at <= %(now)s {{kinds}}
        ORDER BY run_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED
), stalled AS (
    SELECT seq, run_at FROM jobs WHERE state = 'running' AND lease_until <= %(now)s
        AND attempt < %(max)s {{kinds}} ORDER BY run_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = %(owner)s,
    lease_until = %(until)s
WHERE seq = (SELECT seq FROM (SELECT * FROM queued UNION ALL SELECT * FROM stalled) due
    ORDER BY run_at, seq LIMIT 1)
RETURNING {_COLUMNS}
"""


class PostgresJobQueue(PostgresBase, JobQueue):
    def enqueue_job(self, session_id: str, kind: str, *, now: float) -> Job:
        if not kind:
            raise InvalidInput("a job needs a kind (ocr, transcribe, chapters, index, ...)")
        job = Job(new_id(), kind, session_id, run_at=now, created_at=utc_iso(now))
        with self.transaction():
            # ON CONFLICT on the one-active-job index: two processes enqueueing at once
            # find the same job instead of one failing.
            inserted = self._write_returning(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (session_id, kind) WHERE state IN ('queued', 'running')"
                " DO NOTHING RETURNING id",
                _values(job),
                [("sessions", session_id, "session")],
            )
            if inserted:
                return job
            active = self._jobs(
                "WHERE session_id = %s AND kind = %s AND state IN ('queued', 'running')",
                (session_id, kind),
            )
        if not active:
            # It finished between the insert and the read: enqueue anew.
            return self.enqueue_job(session_id, kind, now=now)
        return active[0]

    def claim_job(
        self,
        owner: str,
        *,
        lease_seconds: float,
        now: float,
        kinds: Sequence[str] | None = None,
        max_attempts: int | None = None,
    ) -> Job | None:
        _positive(lease_seconds)
        if max_attempts is not None:
            _at_least_one(max_attempts)
        if kinds is not None and not kinds:
            return None
        params: dict[str, Any] = {
            "iso": utc_iso(now),
            "now": now,
            "max": _NO_LIMIT if max_attempts is None else max_attempts,
            "owner": owner,
            "until": now + lease_seconds,
            "kinds": list(kinds or []),
        }
        sql = _CLAIM.replace("{kinds}", "AND kind = ANY(%(kinds)s)" if kinds is not None else "")
        rows = self._write_returning(sql, params)
        return _job(rows[0]) if rows else None

    def renew_job(self, job_id: str, owner: str, *, lease_seconds: float, now: float) -> bool:
        _positive(lease_seconds)
        changed = self._write(
            f"UPDATE jobs SET lease_until = %(until)s WHERE id = %(id)s AND {_HELD}",
            {"until": now + lease_seconds, "id": job_id, "owner": owner, "now": now},
        )
        if not changed:
            self.get_job(job_id)  # NotFound, or simply lost
        return changed > 0

    def complete_job(self, job_id: str, owner: str, *, now: float) -> None:
        changed = self._write(
            "UPDATE jobs SET state = 'done', finished_at = %(iso)s, lease_owner = NULL,"
            f" lease_until = NULL WHERE id = %(id)s AND {_HELD}",
            {"iso": utc_iso(now), "id": job_id, "owner": owner, "now": now},
        )
        if not changed:
            raise self._lost(job_id, owner, now)

    def fail_job(
        self,
        job_id: str,
        owner: str,
        error: str,
        *,
        now: float,
        max_attempts: int,
        backoff: Backoff,
    ) -> Job:
        _at_least_one(max_attempts)
        with self.transaction():
            held = self._write_returning(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = %(id)s AND {_HELD} FOR UPDATE",
                {"id": job_id, "owner": owner, "now": now},
            )
            if not held:
                raise self._lost(job_id, owner, now)
            job = _job(held[0])
            job.lease_owner = job.lease_until = None
            job.last_error = error
            if job.attempt < max_attempts:
                job.state, job.run_at = "queued", now + backoff.delay(job.attempt)
            else:
                job.state, job.finished_at = "failed", utc_iso(now)
            self._write(
                "UPDATE jobs SET state = %s, lease_owner = NULL, lease_until = NULL,"
                " run_at = %s, last_error = %s, finished_at = %s WHERE id = %s",
                (job.state, job.run_at, job.last_error, job.finished_at, job.id),
            )
        return job

    def release_job(self, job_id: str, owner: str) -> None:
        changed = self._write(
            "UPDATE jobs SET state = 'queued', attempt = attempt - 1, lease_owner = NULL,"
            " lease_until = NULL WHERE id = %s AND state = 'running' AND lease_owner = %s",
            (job_id, owner),
        )
        if not changed:
            raise self._lost(job_id, owner, None)

    def get_job(self, job_id: str) -> Job:
        found = self._jobs("WHERE id = %s", (job_id,))
        if not found:
            raise NotFound(f"no job {job_id!r}")
        return found[0]

    def list_jobs(self, state: JobState | None = None, session_id: str | None = None) -> list[Job]:
        where: list[str] = []
        params: list[str] = []
        if state is not None:
            where.append("state = %s")
            params.append(state)
        if session_id is not None:
            where.append("session_id = %s")
            params.append(session_id)
        return self._jobs(("WHERE " + " AND ".join(where)) if where else "", params)

    def next_due(self, kinds: Sequence[str] | None = None) -> float | None:
        which = " AND kind = ANY(%(kinds)s)" if kinds is not None else ""
        with self._reading() as db:
            row = db.execute(
                "SELECT least("
                f"(SELECT min(run_at) FROM jobs WHERE state = 'queued'{which}),"
                f" (SELECT min(lease_until) FROM jobs WHERE state = 'running'{which}))",
                {"kinds": list(kinds or [])},
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _jobs(self, where: str, params: Sequence[Any]) -> list[Job]:
        with self._reading() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY seq", params)
            return [_job(row) for row in rows.fetchall()]

    def _lost(self, job_id: str, owner: str, now: float | None) -> LeaseLost:
        """Why `owner` holds no lease on the job (NotFound raised if there is no job)."""
        job = self.get_job(job_id)
        if job.state != "running":
            why = f"it is {job.state}"
        elif job.lease_owner != owner:
            why = f"{job.lease_owner} took it over"
        else:
            why = f"the lease ran out at {job.lease_until} (now {now})"
        return LeaseLost(f"{owner} holds no lease on job {job_id} ({job.kind}): {why}")


def _job(row: Sequence[Any]) -> Job:
    return Job(*row)
