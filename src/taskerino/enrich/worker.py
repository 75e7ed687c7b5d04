"""The enrichment worker: claims jobs from the store and runs their stages.

A job runs under a lease that a heartbeat renews. The stage computes its results outside
any transaction (it may take minutes, on other cores) and returns a `commit` that writes
them; the commit, the job's completion and the follow-up jobs run in ONE transaction,
fenced by the lease: a worker whose lease ran out (it stalled, another took the job over)
changes nothing. A failure is kept with the job and retried with backoff; a stage that
keeps failing ends `failed` with its error and does not block the other stages.
Stopping (SIGINT/SIGTERM) gives the jobs in hand back to the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import LeaseLost, TaskerinoError
from ..models import Job, StageState
from ..store.base import Backoff, Store
from ..store.watch import Topic, Watch

log = logging.getLogger("taskerino.worker")

MIN_PAUSE = 0.05  # an idle slot never looks again sooner (a job due but not claimable)

Commit = Callable[[], None]
StageRunner = Callable[[Job], Commit]  # computes a job's results; the commit writes them
FollowUps = Callable[[Job], list[str]]  # kinds to enqueue once a job is done


@dataclass
class WorkerConfig:
    concurrency: int = 1
    lease_seconds: float = 60.0
    max_attempts: int = 3
    backoff: Backoff = field(default_factory=lambda: Backoff(base=5.0, factor=3.0, cap=600.0))
    # An idle slot waits for a job to be queued (`Topic.jobs`) and looks at least this often
    # besides: for a retry coming due, a lease running out, a lost wake.
    poll_seconds: float = 5.0


class Worker:
    def __init__(
        self,
        store: Store,
        stages: Mapping[str, StageRunner],
        follow_ups: FollowUps,
        config: WorkerConfig | None = None,
        *,
        after_commit: Callable[[Job], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.stages = stages
        self.follow_ups = follow_ups
        self.after_commit = after_commit
        self.config = config or WorkerConfig()
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stop = threading.Event()
        self.jobs_done = 0
        self.jobs_failed = 0
        self._held: dict[str, Job] = {}  # jobs in hand, by id
        self._watches: list[Watch] = []  # the idle slots wait on these
        self._lock = threading.Lock()

    # --- running --------------------------------------------------------------------------
    def run(self, *, drain: bool = False) -> None:
        """Run jobs until `stop` is set (or, with `drain`, until none is queued or running).
        Jobs in hand when stopping are given back to the queue."""
        slots = [
            threading.Thread(target=self._slot, args=(drain,), name=f"worker-{i}", daemon=True)
            for i in range(max(1, self.config.concurrency))
        ]
        for slot in slots:
            slot.start()
        try:
            # Stopping does not wait for a stage to finish (one may take minutes): the jobs
            # in hand go back to the queue now, and a stage still running finds its lease
            # gone when it tries to commit.
            while not self.stop.is_set() and any(slot.is_alive() for slot in slots):
                self.stop.wait(0.2)
        finally:
            self.stop.set()
            with self._lock:
                watches = list(self._watches)
            for watch in watches:
                watch.close()  # ends the idle slots' waits at once
            self._release_held()

    def _slot(self, drain: bool) -> None:
        # Draining, a job finishing elsewhere (its stage's status: `Topic.session`) may
        # leave nothing to do.
        topics = [Topic.jobs(), Topic.session()] if drain else [Topic.jobs()]
        try:
            watch: Watch | None = self.store.watch(topics)
        except TaskerinoError as exc:
            log.warning("jobs are polled: %s", exc)
            watch = None
        if watch is not None:
            with self._lock:
                self._watches.append(watch)
        try:
            self._claim_and_run(drain, watch)
        finally:
            if watch is not None:
                watch.close()
                with self._lock:
                    self._watches.remove(watch)

    def _claim_and_run(self, drain: bool, watch: Watch | None) -> None:
        while not self.stop.is_set():
            try:
                job = self.store.claim_job(
                    self.owner,
                    lease_seconds=self.config.lease_seconds,
                    now=self.clock(),
                    kinds=list(self.stages),
                    max_attempts=self.config.max_attempts,
                )
            except TaskerinoError as exc:
                log.error("could not claim a job: %s", exc)
                job = None
            if job is None:
                if drain and self._idle():
                    return
                pause = self._pause()
                if watch is None:
                    self.stop.wait(pause)
                else:
                    watch.wait(pause)  # closed by `run` when stopping
                continue
            self._run(job)

    def _pause(self) -> float:
        """How long an idle slot waits for a job to be queued: until the next job comes
        due (a retry after its backoff, a lease running out), at most `poll_seconds`."""
        poll = self.config.poll_seconds
        try:
            due = self.store.next_due(list(self.stages))
        except TaskerinoError as exc:
            log.error("could not look for jobs coming due: %s", exc)
            return poll
        if due is None:
            return poll
        return min(poll, max(MIN_PAUSE, due - self.clock()))

    def _idle(self) -> bool:
        """No job left that this worker could run: none queued, none running anywhere."""
        active = self.store.list_jobs("queued") + self.store.list_jobs("running")
        return not any(job.kind in self.stages for job in active)

    def _run(self, job: Job) -> None:
        with self._lock:
            self._held[job.id] = job
        beat = _Heartbeat(self, job)
        beat.start()
        try:
            self._status(job, "running")
            try:
                commit = self.stages[job.kind](job)
            except Exception as exc:  # a stage's failure is the job's, never the worker's
                self._fail(job, exc)
                return
            if self.stop.is_set():
                return  # given back by run(): another worker does it again
            self._complete(job, commit)
        finally:
            beat.stop()
            with self._lock:
                self._held.pop(job.id, None)

    def _complete(self, job: Job, commit: Commit) -> None:
        try:
            with self.store.transaction():
                commit()
                self.store.complete_job(job.id, self.owner, now=self.clock())
                self.store.set_stage_status(job.session_id, job.kind, "done")
                for kind in self.follow_ups(job):
                    self.store.enqueue_job(job.session_id, kind, now=self.clock())
        except LeaseLost:
            log.warning("job %s (%s): lease lost, its results were dropped", job.id, job.kind)
            return
        except Exception as exc:
            self._fail(job, exc)
            return
        self.jobs_done += 1
        if self.after_commit is not None:
            try:
                self.after_commit(job)
            except TaskerinoError as exc:
                log.warning("job %s: clean-up after it failed: %s", job.id, exc)

    def _fail(self, job: Job, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TaskerinoError) else str(exc)
        log.error("job %s (%s of session %s) failed: %s", job.id, job.kind, job.session_id, error)
        try:
            with self.store.transaction():
                after = self.store.fail_job(
                    job.id,
                    self.owner,
                    error,
                    now=self.clock(),
                    max_attempts=self.config.max_attempts,
                    backoff=self.config.backoff,
                )
                status: StageState = "failed" if after.state == "failed" else "pending"
                self.store.set_stage_status(job.session_id, job.kind, status, error)
        except LeaseLost:
            return
        except TaskerinoError as failed:
            log.error("could not record the failure of job %s: %s", job.id, failed)
            return
        if after.state == "failed":
            self.jobs_failed += 1

    def _status(self, job: Job, status: StageState) -> None:
        try:
            with self.store.transaction():
                self.store.set_stage_status(job.session_id, job.kind, status)
        except TaskerinoError as exc:
            log.warning("could not record the status of job %s: %s", job.id, exc)

    def _release_held(self) -> None:
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        for job in held:
            try:
                with self.store.transaction():
                    self.store.release_job(job.id, self.owner)
                    self.store.set_stage_status(job.session_id, job.kind, "pending")
            except TaskerinoError as exc:
                log.warning("could not give job %s back (%s): its lease will run out", job.id, exc)


class _Heartbeat:
    """Renews a job's lease at a third of its length while the job runs."""

    def __init__(self, worker: Worker, job: Job) -> None:
        self.worker = worker
        self.job = job
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        worker = self.worker
        every = worker.config.lease_seconds / 3
        while not self._done.wait(every):
            try:
                kept = worker.store.renew_job(
                    self.job.id,
                    worker.owner,
                    lease_seconds=worker.config.lease_seconds,
                    now=worker.clock(),
                )
            except TaskerinoError as exc:
                log.warning("could not renew the lease of job %s: %s", self.job.id, exc)
                continue
            if not kept:
                log.warning("job %s: lease lost while running", self.job.id)
                return
