"""The team profile's store: PostgreSQL beside SQLite, in one run (spec §9, §10).

Run: .venv/bin/python bench/bench_team_store.py [--jobs 4000] [--sessions 10000]
     [--items 100000] [--parts abcd]   (writes bench/results/team-store.json and .md)

PostgreSQL is a throw-away cluster of Debian's server on loopback (the tests' helper), with
its durable defaults (fsync on); SQLite is the embedded store in a temporary folder. Both are
driven through the same `Store` methods.

a. Jobs: JOBS trivial jobs queued, then claimed and completed (`claim_job` as the worker
   calls it, then `complete_job`) by 1, 2, 4 and 8 worker processes, each with its own
   store object, until none is left; jobs per second over the wall time, and double runs
   counted (a job claimed twice, or with an attempt other than 1). Target: ≥ 500/s with 8
   on PostgreSQL, no double run.
b. `list_sessions` with SESSIONS completed sessions (3 screenshots each): the whole list and
   the first page of `find_sessions` (what the web app asks), p50/p95 of REPEATS calls.
d. Recorders' writes: each live recorder's keeper publishes its stats and heartbeat once a
   second (one transaction: `write_stats`, `heartbeat`) and looks for commands five times a
   second (`take_commands`). 1, 4 and 8 processes each play that mix flat out on sessions
   of their own for SECONDS; rounds per second is how many recorders the store keeps up
   with (each needs one round a second).
c. Search over ITEMS indexed items (OCR screens, transcript lines, activity, notes and
   session names, generated as bench_enrich's part c generates them), written through each
   store; the same queries (common and rare words, phrases, prefixes, within one session,
   two common words, a word that matches nothing) on both, p95 per kind. Target: p95 ≤ 50
   ms. PostgreSQL ranks in its RUM index where the server has the extension (the
   benchmark's cluster does). With --before, two more PostgreSQL databases are searched,
   interleaved with the others: one at schema 1 with the query of that schema (the newest
   1 000 matches ranked), one made by a user who may not create the RUM extension (every
   match ranked from the table through the GIN index, as on a server without RUM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' PostgreSQL helper

from tests.postgres_server import PostgresServer, postgres_server

from bench_enrich import QUERIES_PER_KIND, SEARCH_MIX, Texts, make_queries, pct
from taskerino.models import (
    ActivityEvent,
    Attachment,
    ContextItem,
    OcrText,
    RecordingStats,
    Session,
    SessionFilter,
    SessionScreenshot,
    TranscriptLine,
    new_id,
    utc_iso,
)
from taskerino.store import Store, open_store
from taskerino.store.postgres import _schema
from taskerino.store.postgres._connection import PostgresBase
from taskerino.store.postgres._search import PostgresSearchIndex, _Parser, tsquery
from workload import words_of

JOB_KIND = "noop"
WORKERS = (1, 2, 4, 8)
REPEATS = 40
JOBS_TARGET = 500.0
LATENCY_TARGET_MS = 50.0


def opened(url: str) -> Store:
    return open_store(url, Path("unused.db"))


@contextmanager
def backends(server: PostgresServer, folder: Path, name: str) -> Iterator[dict[str, str]]:
    """A fresh empty store of each kind: {backend: url}."""
    pg = server.new_database()
    sqlite = folder / f"{name}.db"
    try:
        yield {"postgresql": pg, "sqlite": f"sqlite://{sqlite}"}
    finally:
        server.drop_database(pg)
        for path in folder.glob(f"{name}.db*"):
            path.unlink()


# --- a. jobs ----------------------------------------------------------------------------
def job_process(url: str, owner: str, barrier: Any, results: Any) -> None:
    """One worker process: claim and complete until no job is left."""
    store = opened(url)
    done: list[str] = []
    barrier.wait()
    while True:
        job = store.claim_job(
            owner, lease_seconds=60.0, now=time.time(), kinds=[JOB_KIND], max_attempts=3
        )
        if job is None:
            break
        store.complete_job(job.id, owner, now=time.time())
        done.append(job.id)
    end = time.time()
    store.close()
    results.put((owner, end, done))


def queue_jobs(url: str, jobs: int) -> None:
    store = opened(url)
    try:
        now = time.time()
        for first in range(0, jobs, 500):
            with store.transaction():
                for i in range(first, min(jobs, first + 500)):
                    sid = new_id()
                    store.create_session(
                        Session(id=sid, name=f"s{i}", start_time=utc_iso(now), status="completed")
                    )
                    store.enqueue_job(sid, JOB_KIND, now=now - 1.0)
    finally:
        store.close()


def part_a(server: PostgresServer, folder: Path, jobs: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    runs = []
    for workers in WORKERS:
        with backends(server, folder, f"jobs-{workers}") as urls:
            for backend, url in urls.items():
                queue_jobs(url, jobs)
                barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
                procs = [
                    ctx.Process(target=job_process, args=(url, f"w{i}", barrier, results))
                    for i in range(workers)
                ]
                for p in procs:
                    p.start()
                barrier.wait()
                t0 = time.time()
                got = [results.get(timeout=900) for _ in procs]
                for p in procs:
                    p.join(60)
                wall = max(end for _, end, _ in got) - t0
                ids = [j for _, _, done in got for j in done]
                store = opened(url)
                listed = store.list_jobs()
                store.close()
                reruns = sum(1 for j in listed if j.attempt != 1)
                run = {
                    "backend": backend,
                    "workers": workers,
                    "jobs": len(ids),
                    "wall_s": wall,
                    "jobs_per_s": len(ids) / wall,
                    "double_runs": len(ids) - len(set(ids)) + reruns,
                    "all_done": len(set(ids)) == jobs and all(j.state == "done" for j in listed),
                    "per_worker": [len(done) for _, _, done in got],
                }
                runs.append(run)
                print(f"a. {backend} x{workers}: {run['jobs_per_s']:.0f} jobs/s", flush=True)
    return runs


# --- b. sessions list -------------------------------------------------------------------
def fill_sessions(url: str, n: int) -> None:
    store = opened(url)
    try:
        base = time.time() - n * 3600.0
        for first in range(0, n, 500):
            with store.transaction():
                for i in range(first, min(n, first + 500)):
                    start = base + i * 3600.0
                    session = Session(
                        id=new_id(),
                        name=f"Work session {i}",
                        description=f"bench session number {i}",
                        start_time=utc_iso(start),
                        status="completed",
                        end_time=utc_iso(start + 2700.0),
                        total_duration=2700.0,
                        tags=["bench", f"project-{i % 7}"],
                    )
                    store.create_session(session)
                    for k in range(3):
                        digest = f"{i:032x}{k:032x}"
                        att = store.add_attachment(
                            Attachment(new_id(), "image", "s.webp", "image/webp", 50_000, digest)
                        )
                        store.add_screenshot(
                            SessionScreenshot(
                                new_id(), session.id, utc_iso(start), k * 900.0, att.id, digest
                            )
                        )
    finally:
        store.close()


def timed(call: Callable[[], object], repeats: int) -> dict[str, float]:
    call()  # warm caches and the pool
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        samples.append(1000 * (time.perf_counter() - t))
    return {"p50_ms": pct(samples, 50), "p95_ms": pct(samples, 95), "max_ms": max(samples)}


def part_b(server: PostgresServer, folder: Path, sessions: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    page = SessionFilter(limit=50)
    filtered = SessionFilter(query="number 12", tag="project-3", limit=50)
    with backends(server, folder, "list") as urls:
        for backend, url in urls.items():
            t = time.perf_counter()
            fill_sessions(url, sessions)
            fill_s = time.perf_counter() - t
            store = opened(url)
            try:
                assert len(store.list_sessions()) == sessions
                out[backend] = {
                    "fill_s": fill_s,
                    "list_sessions_all": timed(store.list_sessions, REPEATS),
                    "find_sessions_page": timed(partial(store.find_sessions, page), REPEATS),
                    "find_sessions_tag_query": timed(
                        partial(store.find_sessions, filtered), REPEATS
                    ),
                }
            finally:
                store.close()
            print(f"b. {backend}: {out[backend]['list_sessions_all']}", flush=True)
    return out


# --- c. search --------------------------------------------------------------------------
def fill_search(url: str, items: int, seed: int) -> dict[str, Any]:
    """`items` indexed items written through the store; what make_queries needs."""
    texts = Texts(seed)
    per_session = 1 + sum(SEARCH_MIX.values())
    sessions = max(1, items // per_session)
    store = opened(url)
    seen: Counter[str] = Counter()
    phrases: list[str] = []
    ids: list[str] = []
    try:
        start = time.time() - sessions * 3600.0
        for s in range(sessions):
            sid = new_id()
            ids.append(sid)
            begin = start + s * 3600.0
            session = Session(
                id=sid,
                name=f"work session {s + 1}",
                start_time=utc_iso(begin),
                status="completed",
                end_time=utc_iso(begin + 3600.0),
                total_duration=3600.0,
            )
            ocr = []
            for k in range(SEARCH_MIX["ocr"]):
                text, words = texts.ocr()
                seen.update(set(words_of(text)))
                ocr.append(
                    OcrText(new_id(), sid, 3600.0 * k / SEARCH_MIX["ocr"], None, text, words)
                )
            lines = []
            for k in range(SEARCH_MIX["transcript"]):
                text = texts.sentence()
                seen.update(set(words_of(text)))
                at = 3600.0 * k / SEARCH_MIX["transcript"]
                lines.append(TranscriptLine(new_id(), sid, at, at + 4.0, text, "system"))
                if len(phrases) < 400 and texts.rng.random() < 0.01:
                    w = [x for x in text.split() if len(x) >= 3 and x.isalpha()]
                    if len(w) >= 2:
                        phrases.append(f'"{w[0]} {w[1]}"')
            with store.transaction():
                store.create_session(session)
                store.replace_ocr(sid, ocr)
                store.replace_transcript(sid, lines)
                for k in range(SEARCH_MIX["activity"]):
                    at = 3600.0 * k / SEARCH_MIX["activity"]
                    title = f"{texts.word()} {texts.word()}"
                    seen.update(set(words_of(f"{title} Editor")))
                    store.add_activity(
                        ActivityEvent(new_id(), sid, utc_iso(begin + at), at, "Editor", title)
                    )
                for k in range(SEARCH_MIX["note"]):
                    at = 3600.0 * k / SEARCH_MIX["note"]
                    text = f"todo: {texts.sentence()}"
                    seen.update(set(words_of(text)))
                    store.add_context_item(
                        ContextItem(new_id(), sid, utc_iso(begin + at), at, "note", text)
                    )
    finally:
        store.close()
    return {"sessions": ids, "seen": seen, "phrases": phrases}


# The search of PostgreSQL schema 1, for --before: its query ranked the newest 1 000
# matches by `ts_rank(tsv, q, 1)` (the tsvector then in TOAST), then read the OCR words in
# a second statement of the same snapshot.
BEFORE_RANKED = 1_000
BEFORE_SEARCH = """
WITH newest AS (
    SELECT id FROM search_items
    WHERE tsv @@ to_tsquery('taskerino', %(q)s) {session}
    ORDER BY id DESC LIMIT %(ranked)s
), ranked AS (
    SELECT i.id, ts_rank(i.tsv, to_tsquery('taskerino', %(q)s), 1) AS rank
    FROM newest JOIN search_items i ON i.id = newest.id
    ORDER BY rank DESC, i.id DESC
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT i.kind, i.item_id, i.session_id, i.media_offset, s.name, i.body, r.rank
FROM ranked r JOIN search_items i ON i.id = r.id JOIN sessions s ON s.id = i.session_id
ORDER BY r.rank DESC, r.id DESC
"""


def search_before(store: Store, query: str, session_id: str | None) -> int:
    """What `search` did at schema 1 (query, snapshot, hits made in Python); hits found."""
    assert isinstance(store, PostgresBase)
    node = _Parser(query).parse()
    if node is None:
        return 0
    params = {"q": tsquery(node), "session": session_id, "ranked": BEFORE_RANKED}
    params |= {"limit": 50, "offset": 0}
    sql = BEFORE_SEARCH.replace(
        "{session}", "" if session_id is None else "AND session_id = %(session)s"
    )
    with store._reading(snapshot=True) as db:
        rows = db.execute(sql, params).fetchall()
        ocr_ids = [r[1] for r in rows if r[0] == "ocr"]
        boxes = dict(
            db.execute("SELECT id, words FROM ocr_texts WHERE id = ANY(%s)", (ocr_ids,)).fetchall()
        )
        hits = [PostgresSearchIndex._hit((*r, boxes.get(r[1])), node) for r in rows]
    return len(hits)


@contextmanager
def schema_1() -> Iterator[None]:
    """Stores opened meanwhile make (or expect) a database of PostgreSQL schema 1."""
    current = _schema.DB_VERSION
    _schema.DB_VERSION = 1
    try:
        yield
    finally:
        _schema.DB_VERSION = current


def more_queries(built: dict[str, Any], seed: int) -> list[tuple[str, str, str | None]]:
    """Two common words (both must be there), and a word that is nowhere."""
    rng = random.Random(seed + 11)
    seen: Counter[str] = built["seen"]
    common = [w for w, _ in seen.most_common(80) if w.isalpha() and len(w) >= 3][:40]
    out: list[tuple[str, str, str | None]] = []
    while len(out) < 2 * QUERIES_PER_KIND:
        first, second = rng.sample(common, 2)
        nowhere = "".join(rng.choice("bdfgkmpstvz") + rng.choice("aeiouy") for _ in range(5))
        if nowhere not in seen:
            out += [("two words", f"{first} {second}", None), ("no match", nowhere, None)]
    return out


def part_c(
    server: PostgresServer, folder: Path, items: int, seed: int, before: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with backends(server, folder, "search") as urls:
        if before:
            urls["postgresql before"] = server.new_database()
            urls["postgresql gin"] = server.new_database(plain=True)
        built: dict[str, dict[str, Any]] = {}
        for backend, url in urls.items():
            t = time.perf_counter()
            with schema_1() if backend == "postgresql before" else contextlib.nullcontext():
                built[backend] = fill_search(url, items, seed)
            out.setdefault("fill_s", {})[backend] = time.perf_counter() - t
            print(f"c. {backend}: {items} items written", flush=True)
        # The same texts on each side (same seed): the queries name sessions by position.
        queries = make_queries(built["sqlite"], seed) + more_queries(built["sqlite"], seed)
        position = {sid: i for i, sid in enumerate(built["sqlite"]["sessions"])}
        stores = {}
        for backend, url in urls.items():
            with schema_1() if backend == "postgresql before" else contextlib.nullcontext():
                stores[backend] = opened(url)

        def search(backend: str, q: str, session: str | None) -> int:
            if backend == "postgresql before":
                return search_before(stores[backend], q, session)
            return len(stores[backend].search(q, session_id=session))

        out["load_before"] = os.getloadavg()
        try:
            times: dict[str, dict[str, list[float]]] = {}
            counts: dict[str, list[tuple[int, int]]] = {}
            for _, q, sid in queries:  # warm every store
                for backend in stores:
                    search(backend, q, _session(built, backend, position, sid))
            for _ in range(3):
                for kind, q, sid in queries:
                    found = {}
                    for backend in stores:
                        session = _session(built, backend, position, sid)
                        t = time.perf_counter()
                        found[backend] = search(backend, q, session)
                        taken = 1000 * (time.perf_counter() - t)
                        times.setdefault(kind, {}).setdefault(backend, []).append(taken)
                    counts.setdefault(kind, []).append((found["postgresql"], found["sqlite"]))
        finally:
            out["load_after"] = os.getloadavg()
            for store in stores.values():
                store.close()
            if before:
                server.drop_database(urls["postgresql before"])
                server.drop_database(urls["postgresql gin"])
        every: dict[str, list[float]] = {}
        latency: dict[str, Any] = {}
        for kind, by in times.items():
            latency[kind] = {b: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for b, v in by.items()}
            for b, v in by.items():
                every.setdefault(b, []).extend(v)
            same = sum(1 for a, b in counts[kind] if a == b)
            latency[kind]["same_hit_count"] = f"{same}/{len(counts[kind])}"
        latency["all"] = {b: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for b, v in every.items()}
        out["latency"] = latency
        out["queries"] = len(queries) * 3
    return out


def _session(
    built: dict[str, dict[str, Any]], backend: str, position: dict[str, int], sid: str | None
) -> str | None:
    return None if sid is None else built[backend]["sessions"][position[sid]]


# --- d. recorders' writes --------------------------------------------------------------
RECORDER_SECONDS = 10.0
RECORDER_PROCESSES = (1, 4, 8)


def keeper_process(url: str, session_id: str, barrier: Any, results: Any) -> None:
    """One process playing recorders' keepers flat out: publish once, look at the commands
    once (a keeper waits for its commands on a watch and looks when woken, or after 1 s)."""
    store = opened(url)
    stats = RecordingStats(session_id)
    rounds = 0
    barrier.wait()
    end = time.monotonic() + RECORDER_SECONDS
    while time.monotonic() < end:
        with store.transaction():
            store.write_stats(stats)
            store.heartbeat(session_id, time.time())
        store.take_commands(session_id)
        rounds += 1
    store.close()
    results.put(rounds)


def part_d(server: PostgresServer, folder: Path) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    runs = []
    for processes in RECORDER_PROCESSES:
        with backends(server, folder, f"keepers-{processes}") as urls:
            for backend, url in urls.items():
                store = opened(url)
                sessions = []
                for i in range(processes):
                    session = Session(
                        id=new_id(), name=f"live {i}", start_time=utc_iso(time.time())
                    )
                    store.create_session(session)
                    sessions.append(session.id)
                store.close()
                barrier, results = ctx.Barrier(processes), ctx.Queue()
                procs = [
                    ctx.Process(target=keeper_process, args=(url, sid, barrier, results))
                    for sid in sessions
                ]
                for p in procs:
                    p.start()
                rounds = sum(results.get(timeout=300) for _ in procs)
                for p in procs:
                    p.join(60)
                run = {
                    "backend": backend,
                    "processes": processes,
                    "rounds_per_s": rounds / RECORDER_SECONDS,
                }
                runs.append(run)
                print(f"d. {backend} x{processes}: {run['rounds_per_s']:.0f} rounds/s", flush=True)
    return runs


# --- report -----------------------------------------------------------------------------
def command_line(args: argparse.Namespace) -> str:
    command = (
        f"python bench/bench_team_store.py --jobs {args.jobs} --sessions {args.sessions}"
        f" --items {args.items}"
    )
    if set(args.parts) != set("abcd"):
        command += f" --parts {args.parts}"
    if args.before:
        command += " --before"
    return command


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    command = command_line(args)
    lines = [
        "# Team profile store: PostgreSQL beside SQLite (spec §9, §10)",
        "",
        f"`{command}` — {os.cpu_count()} CPUs shared with other work,"
        f" Python {platform.python_version()}, {results['postgres_version']};"
        f" load average {results['load_before'][0]:.2f} before,"
        f" {results['load_after'][0]:.2f} after. One run: the figures are noisy.",
        "",
    ]
    for part, run in sorted(results.get("runs", {}).items()):
        if part not in args.parts:
            lines += [
                f"Part {part}: kept from an earlier run (`{run['command']}`; load average"
                f" {run['load_before'][0]:.2f} before, {run['load_after'][0]:.2f} after).",
                "",
            ]
    if "a" in results:
        lines += [
            "## a. Jobs claimed and completed per second (worker processes)",
            "",
            "| workers | PostgreSQL jobs/s | SQLite jobs/s | PostgreSQL ÷ SQLite | double runs"
            " (PG / SQLite) | all done | target (PG, 8 workers ≥ 500/s) |",
            "|---|---|---|---|---|---|---|",
        ]
        by = {(r["backend"], r["workers"]): r for r in results["a"]}
        for w in WORKERS:
            pg, sq = by[("postgresql", w)], by[("sqlite", w)]
            target = "-"
            if w == 8:
                met = pg["jobs_per_s"] >= JOBS_TARGET and pg["double_runs"] == 0
                target = "met" if met else "MISSED"
            lines.append(
                f"| {w} | {pg['jobs_per_s']:.0f} | {sq['jobs_per_s']:.0f} |"
                f" {pg['jobs_per_s'] / sq['jobs_per_s']:.2f}x |"
                f" {pg['double_runs']} / {sq['double_runs']} |"
                f" {pg['all_done'] and sq['all_done']} | {target} |"
            )
        lines.append("")
    if "b" in results:
        b = results["b"]
        lines += [
            f"## b. Sessions list, {args.sessions} sessions (ms)",
            "",
            "| call | PostgreSQL p50 / p95 | SQLite p50 / p95 | PG ÷ SQLite (p95) |"
            " target (p95 ≤ 50 ms) |",
            "|---|---|---|---|---|",
        ]
        for call in ("list_sessions_all", "find_sessions_page", "find_sessions_tag_query"):
            pg, sq = b["postgresql"][call], b["sqlite"][call]
            met = "met" if pg["p95_ms"] <= LATENCY_TARGET_MS else "MISSED"
            lines.append(
                f"| {call} | {pg['p50_ms']:.1f} / {pg['p95_ms']:.1f} |"
                f" {sq['p50_ms']:.1f} / {sq['p95_ms']:.1f} |"
                f" {pg['p95_ms'] / sq['p95_ms']:.2f}x | {met} |"
            )
        lines.append("")
    if "c" in results:
        c = results["c"]
        before = "postgresql before" in c["latency"]["all"]
        lines += [
            f"## c. Search over {args.items} items ({c['queries']} searches each way, ms)",
            "",
            f"Load average {c['load_before'][0]:.2f} when the searches began,"
            f" {c['load_after'][0]:.2f} when they ended.",
            "",
            "| queries |"
            + (
                " PostgreSQL before (schema 1, newest 1 000) p50 / p95 |"
                " PostgreSQL GIN (every match, no RUM) p50 / p95 |"
                if before
                else ""
            )
            + " PostgreSQL (RUM) p50 / p95 | SQLite p50 / p95 | PG ÷ SQLite (p95) |"
            " same hit count | target (p95 ≤ 50 ms) |",
            "|---|---|---|---|---|---|" + ("---|---|" if before else ""),
        ]
        for kind, row in c["latency"].items():
            pg, sq = row["postgresql"], row["sqlite"]
            met = "met" if pg["p95_ms"] <= LATENCY_TARGET_MS else "MISSED"
            old, gin = row.get("postgresql before"), row.get("postgresql gin")
            lines.append(
                f"| {kind} |"
                + (f" {old['p50_ms']:.1f} / {old['p95_ms']:.1f} |" if old else "")
                + (f" {gin['p50_ms']:.1f} / {gin['p95_ms']:.1f} |" if gin else "")
                + f" {pg['p50_ms']:.1f} / {pg['p95_ms']:.1f} |"
                f" {sq['p50_ms']:.1f} / {sq['p95_ms']:.1f} |"
                f" {pg['p95_ms'] / sq['p95_ms']:.2f}x | {row.get('same_hit_count', '-')} |"
                f" {met} |"
            )
        fill = c["fill_s"]
        lines += [
            "",
            f"Writing the items through the store took {fill['postgresql']:.0f} s on"
            f" PostgreSQL and {fill['sqlite']:.0f} s on SQLite"
            + (
                f" ({fill['postgresql before']:.0f} s on PostgreSQL at schema 1,"
                f" {fill['postgresql gin']:.0f} s without RUM)."
                if before
                else "."
            )
            + " Same hit count: PostgreSQL's against SQLite's; PostgreSQL ranks every match"
            " of a query, SQLite its newest 10 000"
            + (", schema 1 its newest 1 000." if before else "."),
            "",
        ]
    if "d" in results:
        lines += [
            "## d. Recorders' keeper writes (rounds per second = recorders kept up with)",
            "",
            "A round: one transaction writing stats and the heartbeat (on PostgreSQL its"
            " trigger sends a NOTIFY), then one look at the commands — what one live"
            " recorder asks of the store each second (its keeper waits for commands on a"
            " watch, woken by LISTEN/NOTIFY, and looks when woken or after 1 s).",
            "",
            "| processes | PostgreSQL rounds/s | SQLite rounds/s | PostgreSQL ÷ SQLite |",
            "|---|---|---|---|",
        ]
        by_d = {(r["backend"], r["processes"]): r for r in results["d"]}
        for n in RECORDER_PROCESSES:
            pg, sq = by_d[("postgresql", n)], by_d[("sqlite", n)]
            lines.append(
                f"| {n} | {pg['rounds_per_s']:.0f} | {sq['rounds_per_s']:.0f} |"
                f" {pg['rounds_per_s'] / sq['rounds_per_s']:.2f}x |"
            )
        lines.append("")
    lines += [
        "## Method and caveats",
        "",
        "- Both stores on the same machine as the benchmark's processes: the 2 cores are"
        " shared by the server, the workers and whatever else runs (see the load averages).",
        "- PostgreSQL runs with its defaults (fsync on, synchronous_commit on): every"
        " commit waits for the WAL to reach the disk (concurrent commits share a flush)."
        " SQLite runs as the embedded store does (WAL, synchronous=NORMAL), which does not"
        " flush at each commit: the two columns do not buy the same durability.",
        "- A search hit count differs between the two only where the tokenizers split a"
        " word differently; the page is at most 50 hits (the stores' default limit).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="abcd")
    parser.add_argument("--name", default="team-store")
    parser.add_argument(
        "--before", action="store_true", help="c: also search a schema-1 database, its way"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    with (
        tempfile.TemporaryDirectory(prefix="taskerino-bench-") as tmp,
        postgres_server(durable=True) as server,
    ):
        import psycopg

        with psycopg.connect(server.url(), autocommit=True) as db:
            version = db.execute("SHOW server_version").fetchone()
        results["postgres_version"] = f"PostgreSQL {version[0] if version else '?'}"
        folder = Path(tmp)
        if "a" in args.parts:
            results["a"] = part_a(server, folder, args.jobs)
        if "b" in args.parts:
            results["b"] = part_b(server, folder, args.sessions)
        if "c" in args.parts:
            results["c"] = part_c(server, folder, args.items, args.seed, args.before)
        if "d" in args.parts:
            results["d"] = part_d(server, folder)
    results["load_after"] = os.getloadavg()
    out = Path(__file__).parent / "results"
    kept = out / f"{args.name}.json"
    # Where each part comes from: this run, or (parts not run now) the run before.
    this_run = {
        "command": command_line(args),
        "load_before": results["load_before"],
        "load_after": results["load_after"],
    }
    results["runs"] = {p: this_run for p in args.parts}
    if kept.exists() and set(args.parts) != set("abcd"):
        earlier = json.loads(kept.read_text())
        for p in "abcd":
            if p not in args.parts and p in earlier:
                results[p] = earlier[p]
                results["runs"][p] = earlier.get("runs", {}).get(p) or {
                    "command": earlier.get("command", "an earlier run"),
                    "load_before": earlier["load_before"],
                    "load_after": earlier["load_after"],
                }
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results, args)
    (out / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
