"""The worker's rules on a real SQLite store, with stage bodies written here (they stand
in for OCR and speech, whose real runs are in test_enrichment.py): a failing stage ends
failed without blocking the others, a late completion is dropped, two workers never run
one job at once, a stopped worker gives its job back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from taskerino.enrich.worker import Commit, Worker, WorkerConfig
from taskerino.models import Job, Session, TranscriptLine, new_id, utc_now
from taskerino.store.base import Backoff
from taskerino.store.sqlite import SQLiteStore

FAST = Backoff(base=0.01, cap=0.02)


def store_with_session(tmp_path: Path) -> tuple[SQLiteStore, str]:
    store = SQLiteStore(tmp_path / "taskerino.db")
    session = Session(id=new_id(), name="s", start_time=utc_now(), status="completed")
    with store.transaction():
        store.create_session(session)
    return store, session.id


def nothing(job: Job) -> Commit:
    return lambda: None


def test_a_failing_stage_ends_failed_and_blocks_nothing(tmp_path: Path) -> None:
    store, sid = store_with_session(tmp_path)

    def broken(job: Job) -> Commit:
        raise RuntimeError("the model file is damaged")

    for kind in ("ocr", "transcribe"):
        store.enqueue_job(sid, kind, now=time.time())
    worker = Worker(
        store,
        {"ocr": broken, "transcribe": nothing},
        lambda job: [],
        WorkerConfig(max_attempts=3, backoff=FAST, poll_seconds=0.01),
    )
    worker.run(drain=True)
    jobs = {j.kind: j for j in store.list_jobs(session_id=sid)}
    assert jobs["ocr"].state == "failed" and jobs["ocr"].attempt == 3
    assert jobs["ocr"].last_error == "RuntimeError: the model file is damaged"
    assert jobs["transcribe"].state == "done"
    status = store.get_session(sid).enrichment
    assert status["ocr"].status == "failed" and "damaged" in (status["ocr"].error or "")
    assert status["transcribe"].status == "done"
    assert (worker.jobs_done, worker.jobs_failed) == (1, 1)


def test_a_completion_after_the_lease_ran_out_is_dropped(tmp_path: Path) -> None:
    store, sid = store_with_session(tmp_path)
    store.enqueue_job(sid, "ocr", now=time.time())
    now = [time.time()]
    line = TranscriptLine(new_id(), sid, 1.0, 2.0, "written by a worker that lost its lease")

    def slow(job: Job) -> Commit:
        now[0] += 120.0  # the stage outlived its 60 s lease; another worker took it over
        store.claim_job("other-worker", lease_seconds=60.0, now=now[0])
        return lambda: store.replace_transcript(sid, [line])

    worker = Worker(
        store, {"ocr": slow}, lambda job: [], WorkerConfig(poll_seconds=0.01), clock=lambda: now[0]
    )
    job = store.claim_job(worker.owner, lease_seconds=60.0, now=now[0])
    assert job is not None
    worker._run(job)
    assert store.get_session(sid).transcript == []  # its results were rolled back
    after = store.get_job(job.id)
    assert after.state == "running" and after.lease_owner == "other-worker"
    assert worker.jobs_done == 0


def test_two_workers_never_run_one_job_at_once(tmp_path: Path) -> None:
    store, sid = store_with_session(tmp_path)
    sessions = [sid]
    for _ in range(29):
        s = Session(id=new_id(), name="s", start_time=utc_now(), status="completed")
        with store.transaction():
            store.create_session(s)
        sessions.append(s.id)
    for s_id in sessions:
        store.enqueue_job(s_id, "index", now=time.time())
    running: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    overlap: list[str] = []
    lock = threading.Lock()

    def stage(job: Job) -> Commit:
        with lock:
            running[job.id] += 1
            runs[job.id] += 1
            if running[job.id] > 1:
                overlap.append(job.id)
        time.sleep(0.01)
        with lock:
            running[job.id] -= 1
        return lambda: None

    workers = [
        Worker(
            SQLiteStore(tmp_path / "taskerino.db"),
            {"index": stage},
            lambda job: [],
            WorkerConfig(concurrency=2, poll_seconds=0.01),
        )
        for _ in range(2)
    ]
    threads = [threading.Thread(target=w.run, kwargs={"drain": True}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert overlap == []
    assert len(runs) == 30 and set(runs.values()) == {1}
    assert sum(w.jobs_done for w in workers) == 30


def test_a_stopped_worker_gives_its_job_back(tmp_path: Path) -> None:
    store, sid = store_with_session(tmp_path)
    store.enqueue_job(sid, "transcribe", now=time.time())
    started = threading.Event()

    def long(job: Job) -> Commit:
        started.set()
        time.sleep(1.0)
        return lambda: None

    worker = Worker(store, {"transcribe": long}, lambda job: [], WorkerConfig(poll_seconds=0.01))
    runner = threading.Thread(target=worker.run)
    runner.start()
    assert started.wait(10)
    worker.stop.set()  # what SIGINT/SIGTERM do in `taskerino worker`
    runner.join(10)
    (job,) = store.list_jobs(session_id=sid)
    assert job.state == "queued" and job.lease_owner is None and job.attempt == 0
    assert store.get_session(sid).enrichment["transcribe"].status == "pending"
