"""Enrichment jobs in SQLite (the `JobQueue` part).

Every state change is one statement, or a read and a write, inside `BEGIN IMMEDIATE`, which
holds the database's write lock: claims are atomic across threads and processes. A claim is
a single `UPDATE … RETURNING` of the job due first. The lease fence is in each statement's
WHERE clause (`lease_owner = ? AND lease_until > ?`), so a worker whose lease ran out
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import InvalidInput, LeaseLost, NotFound
from ...models import Job, JobState, new_id, utc_iso
from ..base import Backoff, JobQueue
from ._connection import SQLiteBase

_COLUMNS = (
    "id, kind, session_id, state, attempt, lease_owner, lease_until, run_at, last_error,"
    " created_at, finished_at"
)
_HELD = "state = 'running' AND lease_owner = ? AND lease_until > ?"


def _positive(lease_seconds: float) -> None:
    if not lease_seconds > 0:
        raise InvalidInput(f"a lease must last more than 0 seconds, not {lease_seconds}")


def _at_least_one(max_attempts: int) -> None:
    if max_attempts < 1:
        raise InvalidInput(f"max_attempts must be at least 1, not {max_attempts}")


class SQLiteJobQueue(SQLiteBase, JobQueue):
    def enqueue_job(self, session_id: str, kind: str, *, now: float) -> Job:
        if not kind:
            raise InvalidInput("a job needs a kind (ocr, transcribe, chapters, index, ...)")
        with self.transaction():
            active = self._jobs(
                "WHERE session_id = ? AND kind = ? AND state IN ('queued', 'running')",
                (session_id, kind),
            )
            if active:
                return active[0]
            job = Job(new_id(), kind, session_id, run_at=now, created_at=utc_iso(now))
            self._write(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                _values(job),
                [("sessions", session_id, "session")],
            )
        return job

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
        kind_filter = ""
        kind_params: tuple[str, ...] = ()
        if kinds is not None:
            kind_filter = f" AND kind IN ({','.join('?' * len(kinds))})"
            kind_params = tuple(kinds)
        with self.transaction():
            if max_attempts is not None:
                self._write(
                    "UPDATE jobs SET state = 'failed', finished_at = ?, lease_owner = NULL,"
                    " lease_until = NULL, last_error = 'attempt ' || attempt || ' ran out of"
                    " its lease: the worker stopped without finishing'"
                    " || coalesce(' (before: ' || last_error || ')', '')"
                    " WHERE state = 'running' AND lease_until <= ? AND attempt >= ?"
                    f"{kind_filter}",
                    (utc_iso(now), now, max_attempts, *kind_params),
                )
            # The first due queued job and the first expired running one, each found by
            # walking jobs_due in order (LIMIT 1), then the earlier of the two. One OR over
            # both would collect every due job into a temporary B-tree to sort it: a claim
            # would cost O(backlog) (measured: 10x fewer claims a second with 10 000 queued).
            rows = self._write_returning(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?,"
                " lease_until = ? WHERE seq = (SELECT seq FROM ("
                " SELECT * FROM (SELECT seq, run_at FROM jobs WHERE state = 'queued'"
                f" AND run_at <= ?{kind_filter} ORDER BY run_at, seq LIMIT 1)"
                " UNION ALL"
                " SELECT * FROM (SELECT seq, run_at FROM jobs WHERE state = 'running'"
                f" AND lease_until <= ?{kind_filter} ORDER BY run_at, seq LIMIT 1)"
                f") ORDER BY run_at, seq LIMIT 1) RETURNING {_COLUMNS}",
                (owner, now + lease_seconds, now, *kind_params, now, *kind_params),
            )
        return _job(rows[0]) if rows else None

    def renew_job(self, job_id: str, owner: str, *, lease_seconds: float, now: float) -> bool:
        _positive(lease_seconds)
        with self.transaction():
            changed = self._write(
                f"UPDATE jobs SET lease_until = ? WHERE id = ? AND {_HELD}",
                (now + lease_seconds, job_id, owner, now),
            )
            if not changed:
                self.get_job(job_id)  # NotFound, or simply lost
        return changed > 0

    def complete_job(self, job_id: str, owner: str, *, now: float) -> None:
        with self.transaction():
            changed = self._write(
                "UPDATE jobs SET state = 'done', finished_at = ?, lease_owner = NULL,"
                f" lease_until = NULL WHERE id = ? AND {_HELD}",
                (utc_iso(now), job_id, owner, now),
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
            held = self._jobs(f"WHERE id = ? AND {_HELD}", (job_id, owner, now))
            if not held:
                raise self._lost(job_id, owner, now)
            job = held[0]
            job.lease_owner = job.lease_until = None
            job.last_error = error
            if job.attempt < max_attempts:
                job.state, job.run_at = "queued", now + backoff.delay(job.attempt)
            else:
                job.state, job.finished_at = "failed", utc_iso(now)
            self._write(
                "UPDATE jobs SET state = ?, lease_owner = NULL, lease_until = NULL, run_at = ?,"
                " last_error = ?, finished_at = ? WHERE id = ?",
                (job.state, job.run_at, job.last_error, job.finished_at, job.id),
            )
        return job

    def release_job(self, job_id: str, owner: str) -> None:
        with self.transaction():
            changed = self._write(
                "UPDATE jobs SET state = 'queued', attempt = attempt - 1, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ? AND state = 'running' AND lease_owner = ?",
                (job_id, owner),
            )
            if not changed:
                raise self._lost(job_id, owner, None)

    def get_job(self, job_id: str) -> Job:
        found = self._jobs("WHERE id = ?", (job_id,))
        if not found:
            raise NotFound(f"no job {job_id!r}")
        return found[0]

    def list_jobs(self, state: JobState | None = None, session_id: str | None = None) -> list[Job]:
        where: list[str] = []
        params: list[str] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        return self._jobs(("WHERE " + " AND ".join(where)) if where else "", params)

    def next_due(self, kinds: Sequence[str] | None = None) -> float | None:
        which, params = "", list(kinds or [])
        if kinds is not None:
            which = f" AND kind IN ({','.join('?' * len(params))})" if params else " AND 0"
        with self._reading() as db:
            row = db.execute(
                "SELECT min(t) FROM ("
                f" SELECT min(run_at) AS t FROM jobs WHERE state = 'queued'{which}"
                f" UNION ALL SELECT min(lease_until) FROM jobs WHERE state = 'running'{which})",
                params * 2,
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
    job = Job(*row)
    # SQLite keeps whole REAL values as integers on disk, and RETURNING hands them back so.
    job.run_at = float(job.run_at)
    if job.lease_until is not None:
        job.lease_until = float(job.lease_until)
    return job


def _values(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.kind,
        job.session_id,
        job.state,
        job.attempt,
        job.lease_owner,
        job.lease_until,
        job.run_at,
        job.last_error,
        job.created_at,
        job.finished_at,
    )
