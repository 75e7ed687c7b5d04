"""The PostgreSQL store beyond the contract suite (which runs on it too): opening by URL,
migrations raced by several processes, and the command line end to end — record with the
default media folder but a PostgreSQL store, list, enrich with `taskerino worker` (one
killed with SIGKILL in the middle of a job), search, doctor."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskerino.enrich.worker import Worker, WorkerConfig
from taskerino.errors import InvalidInput, StorageError
from taskerino.models import ContextItem, Job, Session, new_id, parse_time, utc_now
from taskerino.store import Store, open_store
from taskerino.store.postgres import DB_VERSION, PostgresStore
from taskerino.store.postgres._schema import MIGRATIONS
from taskerino.store.watch import Topic

from .cli_helpers import TASKERINO, run
from .postgres_server import PostgresServer, postgres_server
from .web_helpers import Served
from .xterm import xterm


@pytest.fixture
def database(postgres: PostgresServer) -> Any:
    url = postgres.new_database()
    yield url
    postgres.drop_database(url)


# --- opening ------------------------------------------------------------------------
def test_both_schemes_open_the_store(database: str, tmp_path: Path) -> None:
    for url in (database, database.replace("postgresql://", "postgres://", 1)):
        store = open_store(url, tmp_path / "unused.db")
        assert isinstance(store, PostgresStore)
        store.close()
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql://me:secret@127.0.0.1:notaport/db", "postgresql://me:secret@[::1/db"],
)
def test_a_malformed_url_is_invalid_input_without_the_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="malformed database URL") as caught:
        open_store(url, tmp_path / "unused.db")
    assert "secret" not in str(caught.value) and "***" in str(caught.value)


def test_an_unreachable_database_is_one_clear_line(
    postgres: PostgresServer, home: Path, tmp_path: Path
) -> None:
    closed = (
        postgres.url("nope")
        .replace(str(postgres.port), "1")
        .replace("postgres@", "postgres:hunter2@")
    )
    with pytest.raises(StorageError, match="cannot reach the database") as caught:
        open_store(closed, tmp_path / "unused.db")
    assert "hunter2" not in str(caught.value) and "postgres:***@" in str(caught.value)
    result = run(home, "--store", closed, "sessions", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the database postgresql://postgres:***@")
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
    missing = postgres.url("no_such_database")
    with pytest.raises(StorageError, match="no_such_database"):
        open_store(missing, tmp_path / "unused.db")


def test_a_restarted_server_costs_at_most_one_failed_call() -> None:
    # A cluster of its own: the run's shared one stays up for the other tests.
    with postgres_server() as server:
        url = server.new_database()
        store = open_store(url, Path("unused.db"))
        try:
            session = Session(id=new_id(), name="before the restart", start_time=utc_now())
            store.create_session(session)
            server.control("stop")
            with pytest.raises(StorageError, match="cannot reach the database"):
                store.get_session(session.id)
            server.control("start")
            failures = []
            for _ in range(2):
                try:
                    store.heartbeat(session.id, 1.0)
                    break
                except StorageError as exc:  # the pool's connections from before the restart
                    failures.append(str(exc))
            assert len(failures) <= 1, failures
            assert store.get_session(session.id).name == "before the restart"
        finally:
            store.close()


def test_a_transaction_a_failed_statement_undid_is_never_reported_as_saved(
    database: str,
) -> None:
    store = open_store(database, Path("unused.db"))
    assert isinstance(store, PostgresStore)
    try:
        kept = Session(id=new_id(), name="written before the failure", start_time=utc_now())
        with pytest.raises(StorageError, match="undid the transaction"), store.transaction():
            store.create_session(kept)
            # A statement that needs no savepoint of its own fails; the caller goes on.
            with pytest.raises(StorageError):
                store._write("UPDATE sessions SET total_paused = 1 / 0")
        assert store.list_sessions() == []
    finally:
        store.close()


def _open_at_once(url: str, barrier: Any, out: Any) -> None:
    barrier.wait(60)
    try:
        store = open_store(url, Path("unused.db"))
        store.close()
        out.put("ok")
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_database_at_once_migrate_it_once(database: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = 6
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_at_once, args=(database, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    answers = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert answers == ["ok"] * n
    with psycopg.connect(database) as db:
        assert db.execute("SELECT version FROM taskerino_schema").fetchall() == [(DB_VERSION,)]
        tables = db.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'jobs'"
        ).fetchone()
        assert tables == (1,)


def test_a_database_of_a_newer_schema_is_refused_untouched(database: str, tmp_path: Path) -> None:
    open_store(database, tmp_path / "unused.db").close()
    with psycopg.connect(database) as db:
        db.execute("UPDATE taskerino_schema SET version = %s", (DB_VERSION + 1,))
    with pytest.raises(StorageError, match="newer version of Taskerino"):
        open_store(database, tmp_path / "unused.db")
    with psycopg.connect(database) as db:
        assert db.execute("SELECT version FROM taskerino_schema").fetchall() == [(DB_VERSION + 1,)]


def test_a_database_of_the_first_schema_is_migrated_with_its_search_index(
    database: str, tmp_path: Path
) -> None:
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("CREATE TABLE taskerino_schema (version INTEGER NOT NULL)")
        db.execute("INSERT INTO taskerino_schema VALUES (1)")
        db.execute(MIGRATIONS[0].encode())
        db.execute(
            "INSERT INTO sessions (id, name, status, start_time, schema_version)"
            " VALUES ('s1', 'Old session', 'completed', '2024-01-01T00:00:00Z', 1)"
        )
        db.execute(
            "INSERT INTO context_items (id, session_id, timestamp, media_offset, type, content)"
            " VALUES ('n1', 's1', 't', 2.0, 'note', 'the quokka, the e-mail: quokka')"
        )
    store = open_store(database, tmp_path / "unused.db")
    try:
        (hit,) = store.search("quokka")
        assert (hit.item_id, hit.snippet) == ("n1", "the [quokka], the e-mail: [quokka]")
        assert [h.item_id for h in store.search("mail")] == ["n1"]
        store.add_context_item(ContextItem("n2", "s1", "t", 3.0, "note", "quokka"))
        found = [h.item_id for h in store.search("quokka")]
        if store.ranks_in_index:  # type: ignore[attr-defined]
            assert found == ["n1", "n2"], "RUM's score: two matches before one, any length"
        else:
            assert found == ["n2", "n1"], "ts_rank over the length: the short text first"
    finally:
        store.close()
    with psycopg.connect(database) as db:
        assert db.execute("SELECT version FROM taskerino_schema").fetchall() == [(DB_VERSION,)]
        words = db.execute("SELECT item_id, words FROM search_items ORDER BY item_id").fetchall()
        assert words == [("n1", 6), ("n2", 1), ("s1", 2)]


def _indexes(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'search_items'")
        return {str(r[0]) for r in rows.fetchall()}


def test_search_ranks_in_a_rum_index_where_the_user_may_create_it(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with_rum, without = postgres.new_database(), postgres.new_database(plain=True)
    try:
        for url, rum in ((with_rum, True), (without, False)):
            caplog.clear()
            stores = [open_store(url, tmp_path / "unused.db") for _ in range(2)]
            try:
                assert all(isinstance(s, PostgresStore) for s in stores)
                assert [s.ranks_in_index for s in stores] == [rum, rum]  # type: ignore[attr-defined]
                told = [r for r in caplog.records if "no RUM index" in r.getMessage()]
                assert len(told) == (0 if rum else 1), "said once, not by every store"
            finally:
                for s in stores:
                    s.close()
            names = _indexes(url)
            assert ("search_items_rum" in names) is rum
            assert ("search_items_words" in names) is not rum, "GIN only where RUM is not"
    finally:
        postgres.drop_database(with_rum)
        postgres.drop_database(without)


# --- the command line end to end ----------------------------------------------------
WORD = "zanzibar"


def _cli(home: Path, url: str, *args: str, timeout: float = 120.0) -> Any:
    result = run(home, *args, "--json", timeout=timeout, env={"TASKERINO_STORE": url})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _record(home: Path, url: str) -> str:
    """A 3 s session with screenshots and video of an xterm showing WORD; its id."""
    with xterm("Zanzibar notes", [f"{WORD} quarterly plan", "second line"], cols=30):
        ended = _cli(
            home, url, "record", "--name", "pg demo", "--duration", "3", "--video",
            "--screenshot-interval", "1",
        )  # fmt: skip
    assert ended["status"] == "completed"
    return str(ended["id"])


@pytest.mark.usefixtures("xdisplay")
def test_record_list_enrich_search_and_doctor_on_postgresql(
    home: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = _record(home, database)
    assert not (home / "taskerino.db").exists(), "the metadata went to PostgreSQL"
    (listed,) = _cli(home, database, "sessions", "list")
    assert listed["id"] == sid and listed["has_video"] is True
    assert listed["screenshot_count"] >= 2
    worker = run(home, "worker", "--drain", env={"TASKERINO_STORE": database}, timeout=300)
    assert worker.returncode == 0, worker.stderr
    jobs = _cli(home, database, "jobs", "list")
    assert {j["kind"] for j in jobs} >= {"ocr", "transcribe", "chapters", "index"}
    assert all(j["state"] == "done" for j in jobs), jobs
    hits = _cli(home, database, "search", WORD)
    assert hits and {h["session_id"] for h in hits} == {sid}
    ocr = [h for h in hits if h["kind"] == "ocr"]
    assert ocr and all(h["words"] for h in ocr), hits
    assert any(f"[{WORD}]" in h["snippet"].lower() for h in ocr), hits
    assert [h["kind"] for h in _cli(home, database, "search", "demo")] == ["session"]
    assert _cli(home, database, "doctor") == {"ok": True, "problems": []}
    # Export and the storage budget read and write through the same store.
    exported = run(home, "export", sid, "--to", str(home.parent / "out"), "--format", "json,md",
                   env={"TASKERINO_STORE": database})  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert json.loads(next((home.parent / "out").glob("*.json")).read_text())["id"] == sid
    gc = run(home, "gc", "--max-storage", "1K", "--json", env={"TASKERINO_STORE": database})
    assert gc.returncode == 0, gc.stderr
    recycled = {r["kind"] for r in _cli(home, database, "sessions", "show", sid)["recycled"]}
    assert recycled >= {"full_video"}, recycled
    assert _cli(home, database, "doctor") == {"ok": True, "problems": []}
    # The web app over the same store: the list, the session and search.
    monkeypatch.setenv("TASKERINO_STORE", database)
    served = Served(home, "--port", "0", "--no-worker")
    try:
        page = served.api("GET", "/api/sessions")
        assert [s["id"] for s in page["sessions"]] == [sid]
        assert served.api("GET", f"/api/sessions/{sid}")["name"] == "pg demo"
        found = served.api("GET", f"/api/search?q={WORD}")["hits"]
        assert found and {h["session_id"] for h in found} == {sid}
    finally:
        assert served.stop()[0] == 0


@pytest.mark.usefixtures("xdisplay")
def test_a_worker_killed_mid_job_has_its_job_run_again_once(home: Path, database: str) -> None:
    sid = _record(home, database)
    store = open_store(database, home / "unused.db")
    try:
        killed_in: list[str] = []
        for _ in range(5):  # a job can finish between our look and the kill: try again
            proc = subprocess.Popen(
                [*TASKERINO, "--home", str(home), "--store", database, "worker"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            running: list[Any] = []
            deadline = time.monotonic() + 120
            while not running and time.monotonic() < deadline and proc.poll() is None:
                running = store.list_jobs("running", session_id=sid)
                if not running and not store.list_jobs("queued", session_id=sid):
                    break  # every job already ran: nothing left to kill it in
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            still = store.list_jobs("running", session_id=sid) if running else []
            if still:
                killed_in = [j.id for j in still]
                break
        assert killed_in, "no kill landed in the middle of a job"
        job = store.get_job(killed_in[0])
        assert job.state == "running" and job.attempt == 1
        # Its lease runs out (the worker is gone and renews nothing): time is moved on by
        # ending the lease in the database rather than by waiting out the 60 s default.
        with psycopg.connect(database) as db:
            db.execute("UPDATE jobs SET lease_until = 0 WHERE state = 'running'")
        worker = run(home, "--store", database, "worker", "--drain", timeout=300)
        assert worker.returncode == 0, worker.stderr
        again = store.get_job(job.id)
        assert again.state == "done" and again.attempt == 2
        assert all(j.state == "done" for j in store.list_jobs(session_id=sid))
        session = store.get_session(sid)
        # The results were written once: no row twice, and what is searchable is found
        # once per item.
        ocr = [(o.media_offset, o.screenshot_id, o.text) for o in session.ocr]
        assert ocr and len(ocr) == len(set(ocr))
        assert session.video is not None and session.video.chapters
        hits = store.search(WORD)
        assert hits and len({h.item_id for h in hits}) == len(hits)
        assert {h.kind for h in hits} >= {"ocr"}
    finally:
        store.close()


@pytest.mark.parametrize("query", ["NEAR(budget plan)", "budget + plan", "^budget", "body:budget"])
def test_fts5_syntax_beyond_the_contract_is_refused_clearly(database: str, query: str) -> None:
    store = open_store(database, Path("unused.db"))
    try:
        with pytest.raises(InvalidInput, match="cannot search for") as caught:
            store.search(query)
        assert "query" in str(caught.value) or "PostgreSQL" in str(caught.value)
        assert store.search("NEAR") == [], "NEAR alone is a word"
    finally:
        store.close()


# --- search reads the same on both stores ------------------------------------------------
VOCABULARY = ["budget", "Budget", "budgets", "café", "CAFE", "e-mail", "mail", "plan", "плaн",
              "Привет", "x_y", "42", "v2", "deploy", "deployed"]  # fmt: skip
QUERIES = st.recursive(
    st.one_of(
        st.sampled_from(["budget", "cafe", "mail", "plan", "42", "v2", "deploy", "привет"]),
        st.sampled_from(["bud*", "dep*", "ca*", "e*", '"e mail"', '"budget plan"', '"x y"']),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" ", " AND ", " OR ", " NOT "]), inner).map(
            lambda t: "".join(t)
        ),
        inner.map(lambda q: f"({q})"),
    ),
    max_leaves=4,
)


@pytest.fixture(scope="module")
def both_stores(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = postgres.new_database()
    sqlite = open_store(str(tmp_path_factory.mktemp("parity") / "t.db"), Path("unused.db"))
    pg = open_store(url, Path("unused.db"))
    yield sqlite, pg
    sqlite.close()
    pg.close()
    postgres.drop_database(url)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(
        st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=8).map(" ".join),
        min_size=1,
        max_size=6,
    ),
    query=QUERIES,
)
def test_search_finds_and_marks_the_same_on_both_stores(
    both_stores: tuple[Store, Store], texts: list[str], query: str
) -> None:
    answers: list[object] = []
    for store in both_stores:
        session = Session(id=new_id(), name="parity", start_time=utc_now())
        store.create_session(session)
        notes = [
            ContextItem(f"{session.id}-{i}", session.id, "t", float(i), "note", text)
            for i, text in enumerate(texts)
        ]
        for item in notes:
            store.add_context_item(item)
        try:
            hits = store.search(query, session_id=session.id)
        except InvalidInput:
            answers.append("invalid")  # (the query language's own rules: one check for both)
            continue
        answers.append(
            sorted((h.item_id.split("-")[-1], h.kind, h.snippet) for h in hits if h.kind == "note")
        )
    sqlite, pg = answers
    assert pg == sqlite, (texts, query)


# --- workers killed at random while 100 jobs run ------------------------------------------
JOB_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from taskerino.enrich.worker import Worker, WorkerConfig
    from taskerino.models import TranscriptLine
    from taskerino.store import open_store
    from taskerino.store.base import Backoff

    store = open_store(sys.argv[1], Path("unused.db"))

    def stage(job):
        time.sleep(0.2)  # the work, outside any transaction
        line = TranscriptLine(
            job.session_id + "-line", job.session_id, 0.0, 1.0, "the result", "mic"
        )

        def commit():
            store.replace_transcript(job.session_id, [line])
            # Commits with the job's completion, or not at all: one key per committed run.
            store.set_setting("run:" + job.id + ":" + worker.owner, 1)

        return commit

    config = WorkerConfig(
        lease_seconds=1.5, max_attempts=100, backoff=Backoff(base=0.1, cap=0.2),
        poll_seconds=0.05, concurrency=2,
    )
    worker = Worker(store, {"transcribe": stage}, lambda job: [], config)
    worker.run(drain=True)
    store.close()
    """
)


def test_workers_killed_at_random_leave_every_job_done_once(database: str) -> None:
    store = open_store(database, Path("unused.db"))
    try:
        sessions = []
        with store.transaction():
            for i in range(100):
                session = Session(id=new_id(), name=f"s{i}", start_time=utc_now())
                store.create_session(session)
                store.enqueue_job(session.id, "transcribe", now=time.time())
                sessions.append(session.id)
        rng = random.Random(20261125)

        def worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-c", JOB_WORKER, database],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        procs = [worker() for _ in range(3)]
        deadline = time.monotonic() + 60
        while not store.list_jobs("running") and time.monotonic() < deadline:
            time.sleep(0.02)
        # 100 jobs of 0.2 s on 6 slots take about 3.5 s: both kills land while they run.
        for proc in procs[:2]:
            time.sleep(rng.uniform(0.2, 1.2))
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait(120)
        assert [p.returncode for p in procs[:2]] == [-signal.SIGKILL] * 2
        # What the killed ones held is claimed again once their leases run out.
        for _ in range(10):
            if all(j.state == "done" for j in store.list_jobs()):
                break
            time.sleep(1.6)
            finisher = worker()
            assert finisher.wait(120) == 0
        jobs = store.list_jobs()
        assert len(jobs) == 100 and all(j.state == "done" for j in jobs)
        assert any(j.attempt > 1 for j in jobs), "no kill landed in the middle of a job"
        with psycopg.connect(database) as db:
            runs = [r[0] for r in db.execute("SELECT key FROM settings WHERE key LIKE 'run:%'")]
        committed = Counter(key.split(":")[1] for key in runs)
        assert committed == {j.id: 1 for j in jobs}, "a job's results committed twice"
        for sid in sessions:
            assert [t.text for t in store.get_session(sid).transcript] == ["the result"]
    finally:
        store.close()


# --- waiting: LISTEN/NOTIFY --------------------------------------------------------------
def _listeners(store: Store) -> list[str]:
    """The channels this database's listening connections LISTENed to last."""
    assert isinstance(store, PostgresStore)
    with store._reading() as db:
        rows = db.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %%'"
        ).fetchall()
    return [row[0] for row in rows]


def test_an_idle_worker_is_woken_by_notify_long_before_its_poll(database: str) -> None:
    store = open_store(database, Path("unused.db"))
    other = open_store(database, Path("unused.db"))
    ran = threading.Event()

    def stage(job: Job) -> Callable[[], None]:
        ran.set()
        return lambda: None

    # Without a notification this worker would look for a job every 120 s.
    worker = Worker(store, {"ocr": stage}, lambda job: [], WorkerConfig(poll_seconds=120))
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not _listeners(other):
            assert time.monotonic() < deadline, "the worker never LISTENed"
            time.sleep(0.05)
        assert _listeners(other) == ['LISTEN "taskerino_jobs"']
        time.sleep(1.0)  # its claim found nothing: it waits
        session = Session(id=new_id(), name="queued later", start_time=utc_now())
        other.create_session(session)
        queued = time.monotonic()
        other.enqueue_job(session.id, "ocr", now=time.time())
        assert ran.wait(60), "the job was not run"
        assert time.monotonic() - queued < 20  # well before the 120 s poll
    finally:
        worker.stop.set()
        runner.join(30)
        other.close()
        store.close()
    assert not runner.is_alive()


def test_a_watch_outlives_a_restart_of_the_server() -> None:
    # A cluster of its own: the run's shared one stays up for the other tests.
    with postgres_server() as server:
        url = server.new_database()
        store = open_store(url, Path("unused.db"))
        session = Session(id=new_id(), name="steered", start_time=utc_now())
        store.create_session(session)
        watch = store.watch([Topic.commands(session.id)])
        try:
            assert isinstance(store, PostgresStore) and store.listening
            server.control("stop")
            started = time.monotonic()
            assert watch.wait(1.0) is False  # the database is away: a plain timeout
            assert time.monotonic() - started >= 1.0
            server.control("start")
            # Back: the connection is made again and LISTENs, and wakes the watch once
            # (changes may have been missed meanwhile).
            assert watch.wait(60.0)
            assert store.listening
            other = open_store(url, Path("unused.db"))
            try:
                other.push_command(session.id, "end")
            finally:
                other.close()
            started = time.monotonic()
            assert watch.wait(60.0)
            assert time.monotonic() - started < 20  # well before the timeout
            try:
                taken = store.take_commands(session.id)
            except StorageError:  # the pool's connection from before the restart
                taken = store.take_commands(session.id)
            assert taken == ["end"]
        finally:
            watch.close()
            store.close()


@pytest.mark.usefixtures("xdisplay")
def test_recording_goes_on_while_the_database_is_away_and_catches_up(home: Path) -> None:
    # A cluster of its own, stopped for 10 s in the middle of a 16 s recording.
    with postgres_server() as server:
        url = server.new_database()
        env = {**os.environ, "TASKERINO_STORE": url}
        proc = subprocess.Popen(
            [*TASKERINO, "--home", str(home), "record", "--duration", "16", "--video",
             "--screenshot-interval", "1", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not list(home.glob("staging/*/video/chunk-*.mp4")):
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.1)
            time.sleep(2.0)
            server.control("stop")
            away = time.time()
            time.sleep(10.0)
            server.control("start")
            back = time.time()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "error connecting" not in err, err
        ended = json.loads(out)
        assert ended["status"] == "completed"
        # Screenshots went on (a second apart) while the database was away, and every one
        # of them reached it once it was back.
        start = parse_time(ended["start_time"]).timestamp()
        offsets = sorted(s["media_offset"] for s in ended["screenshots"])
        during = [t for t in offsets if away - start + 0.5 <= t <= back - start - 0.5]
        assert len(during) >= 7, (offsets, away - start, back - start)
        assert len(offsets) >= 12, offsets
        assert ended["video"]["chunking_status"] == "complete"
        assert ended["total_duration"] >= 15.0
        doctor = run(home, "doctor", "--json", env={"TASKERINO_STORE": url})
        assert json.loads(doctor.stdout) == {"ok": True, "problems": []}, doctor.stderr
