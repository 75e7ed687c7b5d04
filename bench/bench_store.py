"""Store transactions and `sessions list` against spec §10.

Run: .venv/bin/python bench/bench_store.py  (writes bench/results/store.json)

1. Transactions: TX transactions, each one session + 1 attachment + 5 screenshots +
   2 context items, written through `SQLiteStore.transaction()` and the store's methods,
   versus plain sqlite3 running the same INSERT statements with the same parameter values
   (recorded from the store beforehand) into the same schema, same pragmas,
   `BEGIN IMMEDIATE ... COMMIT` per transaction. Each run gets a fresh database file; the
   runs alternate; medians are compared (target: store ≤ 1.3× plain). A third variant,
   plain sqlite3 sending every statement the store sent (savepoints around each write, the
   re-read after the attachment insert), splits the store's extra time into SQL and Python.
2. `sessions list` with SESSIONS completed sessions (3 screenshots each, every 4th with a
   video row, every 3rd with 2 audio segments): `store.list_sessions()`, the library call
   through `Taskerino`, and the real CLI as a subprocess next to the CLI's start-up
   cost (target: ≤ 50 ms).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from taskerino.config import Layout
from taskerino.models import (
    Attachment,
    ContextItem,
    Session,
    SessionAudioSegment,
    SessionScreenshot,
    SessionVideo,
    new_id,
)
from taskerino.sessions import Taskerino
from taskerino.store.sqlite import _SUMMARY, SCHEMA, SQLiteStore

TX = 2_000
TX_REPEATS = 5
SESSIONS = 10_000
LIST_REPEATS = 20
PAGE = 100  # a screenful, for comparison: the target is about listing all of them
OPEN_REPEATS = 5
CLI_REPEATS = 5
TX_TARGET = 1.3
LIST_TARGET_MS = 50.0
Row = tuple[str, str, str, str, bool | None]
_files = itertools.count()

Statement = tuple[str, Any]


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- 1. transactions ------------------------------------------------------------------


@dataclass
class Unit:
    """One transaction's records."""

    session: Session
    attachment: Attachment
    shots: list[SessionScreenshot]
    items: list[ContextItem]


def make_units(n: int) -> list[Unit]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    units = []
    for i in range(n):
        start = base + timedelta(minutes=i)
        session = Session(
            id=new_id(),
            name=f"session {i}",
            start_time=iso(start),
            description="bench",
            tags=["bench", f"t{i % 10}"],
        )
        digest = f"{i:064x}"
        attachment = Attachment(
            new_id(),
            "image",
            "shot.webp",
            "image/webp",
            48_213,
            digest,
            iso(start),
            None,
            1920,
            1080,
        )
        shots = [
            SessionScreenshot(
                new_id(),
                session.id,
                iso(start + timedelta(seconds=k)),
                float(k),
                attachment.id,
                digest,
            )
            for k in range(5)
        ]
        items = [
            ContextItem(
                new_id(),
                session.id,
                iso(start + timedelta(seconds=k)),
                float(k),
                "note",
                f"note {k} of session {i}",
            )
            for k in range(2)
        ]
        units.append(Unit(session, attachment, shots, items))
    return units


def write_unit(store: SQLiteStore, u: Unit) -> None:
    with store.transaction():
        store.create_session(u.session)
        store.add_attachment(u.attachment)
        for shot in u.shots:
            store.add_screenshot(shot)
        for item in u.items:
            store.add_context_item(item)


class Recorder:
    """Stands in for the store's connection and notes every statement sent through it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.log: list[Statement] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.log.append((sql, params))
        return self.db.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def record_statements(folder: Path, units: list[Unit]) -> list[list[Statement]]:
    """What the store sends to SQLite for each unit, between BEGIN IMMEDIATE and COMMIT.

    Taken from the store itself so the reference cannot drift from the store's SQL.
    """
    store = SQLiteStore(fresh_path(folder, "record"))
    recorder = Recorder(store._db)
    store._db = cast(sqlite3.Connection, recorder)
    statements = []
    for u in units:
        recorder.log.clear()
        write_unit(store, u)
        log = recorder.log
        assert log[0][0] == "BEGIN IMMEDIATE" and log[-1][0] == "COMMIT", log
        statements.append(log[1:-1])
    store._db = recorder.db
    store.close()
    return statements


def is_insert(statement: Statement) -> bool:
    return statement[0].lstrip().upper().startswith("INSERT")


def fresh_path(folder: Path, name: str) -> Path:
    return folder / f"{name}-{next(_files)}.db"


def run_store(folder: Path, units: list[Unit]) -> tuple[float, float]:
    store = SQLiteStore(fresh_path(folder, "store"))
    cpu = time.process_time()
    start = time.perf_counter()
    for u in units:
        write_unit(store, u)
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    count = len(store.list_sessions())
    store.close()
    assert count == len(units), "the store lost sessions"
    return elapsed


def run_plain(folder: Path, transactions: list[list[Statement]]) -> tuple[float, float]:
    db = sqlite3.connect(fresh_path(folder, "plain"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=30000")
    db.executescript(SCHEMA)
    execute = db.execute
    cpu = time.process_time()
    start = time.perf_counter()
    for statements in transactions:
        execute("BEGIN IMMEDIATE")
        for sql, params in statements:
            execute(sql, params)
        execute("COMMIT")
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    count = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
    db.close()
    assert count == len(transactions), "plain sqlite3 lost sessions"
    return elapsed


def bench_transactions(folder: Path) -> dict[str, Any]:
    units = make_units(TX)
    everything = record_statements(folder, units)  # also the warm-up of the store's path
    inserts = [[st for st in sts if is_insert(st)] for sts in everything]
    per_tx = len(inserts[0])
    assert all(len(i) == per_tx == 9 for i in inserts), "expected 9 INSERTs a transaction"
    runners: dict[str, Callable[[], tuple[float, float]]] = {
        "store": lambda: run_store(folder, units),
        "plain": lambda: run_plain(folder, inserts),
        # Plain sqlite3 sending every statement the store sent (savepoints around each
        # write, the re-read after the attachment insert): the SQL part of the store's cost.
        "plain_all_store_statements": lambda: run_plain(folder, everything),
    }
    run_plain(folder, inserts[:200])
    walls: dict[str, list[float]] = {name: [] for name in runners}
    cpus: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(TX_REPEATS):
        for name, run in runners.items():
            wall, cpu = run()
            walls[name].append(wall)
            cpus[name].append(cpu)
    wall_ms = {name: statistics.median(t) * 1000 for name, t in walls.items()}
    cpu_ms = {name: statistics.median(t) * 1000 for name, t in cpus.items()}
    # What the store spends turning a Session into parameters (config → JSON via asdict).
    start = time.perf_counter()
    for u in units:
        SQLiteStore._session_values(u.session)
    values_ms = (time.perf_counter() - start) * 1000
    return {
        "transactions": TX,
        "inserts_per_transaction": per_tx,
        "store_statements_per_transaction": len(everything[0]) + 2,
        "runs": TX_REPEATS,
        "wall_ms": {k: round(v, 1) for k, v in wall_ms.items()},
        "cpu_ms": {k: round(v, 1) for k, v in cpu_ms.items()},
        "ratio_wall": round(wall_ms["store"] / wall_ms["plain"], 3),
        "ratio_cpu": round(cpu_ms["store"] / cpu_ms["plain"], 3),
        "ratio_wall_all_store_statements": round(
            wall_ms["plain_all_store_statements"] / wall_ms["plain"], 3
        ),
        "ratio_cpu_all_store_statements": round(
            cpu_ms["plain_all_store_statements"] / cpu_ms["plain"], 3
        ),
        "session_values_ms": round(values_ms, 1),
        "all_runs_wall_s": {name: [round(t, 4) for t in ts] for name, ts in walls.items()},
    }


# --- 2. sessions list -----------------------------------------------------------------


def fill(home: Path, n: int) -> None:
    store = SQLiteStore(Layout(home).database)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    with store.transaction():
        for i in range(n):
            start = base + timedelta(hours=i)
            end = start + timedelta(minutes=45)
            session = Session(
                id=new_id(),
                name=f"Work session {i}",
                start_time=iso(start),
                description=f"bench session number {i}",
                status="completed",
                end_time=iso(end),
                total_duration=2700.0,
                tags=["bench", f"project-{i % 7}"],
            )
            store.create_session(session)
            for k in range(3):
                digest = f"{i:032x}{k:032x}"
                att = store.add_attachment(
                    Attachment(
                        new_id(),
                        "image",
                        "shot.webp",
                        "image/webp",
                        50_000,
                        digest,
                        iso(start),
                        None,
                        1920,
                        1080,
                    )
                )
                store.add_screenshot(
                    SessionScreenshot(
                        new_id(),
                        session.id,
                        iso(start + timedelta(minutes=k * 15)),
                        k * 900.0,
                        att.id,
                        digest,
                    )
                )
            if i % 3 == 0:
                for k in range(2):
                    digest = f"{i:032x}a{k:031x}"
                    att = store.add_attachment(
                        Attachment(
                            new_id(),
                            "audio",
                            "seg.opus",
                            "audio/ogg",
                            90_000,
                            digest,
                            iso(start),
                            60.0,
                        )
                    )
                    store.add_audio_segment(
                        SessionAudioSegment(
                            new_id(), session.id, iso(start), k * 60.0, 60.0, att.id
                        )
                    )
            if i % 4 == 0:
                digest = f"{i:032x}b{0:031x}"  # hex only: the store checks digests
                att = store.add_attachment(
                    Attachment(
                        new_id(),
                        "video",
                        "full.mp4",
                        "video/mp4",
                        9_000_000,
                        digest,
                        iso(end),
                        2700.0,
                        1920,
                        1080,
                    )
                )
                store.save_video(
                    SessionVideo(
                        new_id(),
                        session.id,
                        1920,
                        1080,
                        15,
                        ["display:0"],
                        "passthrough",
                        att.id,
                        2700.0,
                        "complete",
                    )
                )
    store.close()


@dataclass
class Timing:
    """Milliseconds: wall clock (median, fastest, slowest) and CPU time (median)."""

    wall: float
    fastest: float
    slowest: float
    cpu: float

    def record(self) -> dict[str, float]:
        return {
            "wall_ms": round(self.wall, 2),
            "fastest_ms": round(self.fastest, 2),
            "slowest_ms": round(self.slowest, 2),
            "cpu_ms": round(self.cpu, 2),
        }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(call: Callable[[], object], repeats: int, subprocesses: bool = False) -> Timing:
    """CPU time is this process's, or its finished children's when `subprocesses`: unlike
    the wall clock it does not grow when other programs compete for the cores."""
    cpu_clock = children_cpu if subprocesses else time.process_time
    walls, cpus = [], []
    for _ in range(repeats):
        cpu = cpu_clock()
        start = time.perf_counter()
        call()
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((cpu_clock() - cpu) * 1000)
    return Timing(statistics.median(walls), min(walls), max(walls), statistics.median(cpus))


def run_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "taskerino", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def bench_list(folder: Path) -> dict[str, Any]:
    home = folder / "home"
    home.mkdir()
    start = time.perf_counter()
    fill(home, SESSIONS)
    fill_s = time.perf_counter() - start
    db_path = Layout(home).database
    t: dict[str, Timing] = {}

    # The query the store runs, and how SQLite plans it.
    sql = _SUMMARY + " ORDER BY s.start_time DESC, s.rowid DESC"
    probe = sqlite3.connect(db_path)
    plan = [row[3] for row in probe.execute("EXPLAIN QUERY PLAN " + sql)]
    raw_rows = len(probe.execute(sql).fetchall())
    t["sql_alone"] = measure(lambda: probe.execute(sql).fetchall(), LIST_REPEATS)
    probe.close()

    store = SQLiteStore(db_path)
    rows = store.list_sessions()
    assert len(rows) == SESSIONS == raw_rows
    assert sum(r.has_video for r in rows) == (SESSIONS + 3) // 4
    assert all(r.screenshot_count == 3 for r in rows)
    t["store"] = measure(store.list_sessions, LIST_REPEATS)
    assert len(store.list_sessions(limit=PAGE)) == PAGE
    t["store_page"] = measure(lambda: store.list_sessions(limit=PAGE), LIST_REPEATS)
    t["attachment_hashes"] = measure(store.attachment_hashes, OPEN_REPEATS)
    store.close()

    manager = Taskerino.open(home)
    try:
        t["api"] = measure(manager.list_sessions, LIST_REPEATS)
        rows = manager.list_sessions()
        dicts = [asdict(r) for r in rows]
        t["asdict"] = measure(lambda: [asdict(r) for r in rows], OPEN_REPEATS)
        t["dumps_indent"] = measure(lambda: json.dumps(dicts, indent=2), OPEN_REPEATS)
        t["dumps_compact"] = measure(lambda: json.dumps(dicts), OPEN_REPEATS)
    finally:
        manager.close()

    def open_list_close() -> None:
        m = Taskerino.open(home)
        try:
            m.list_sessions()
        finally:
            m.close()

    t["api_open_list_close"] = measure(open_list_close, OPEN_REPEATS)
    t["api_open_close"] = measure(lambda: Taskerino.open(home).close(), OPEN_REPEATS)

    out = run_cli("--home", str(home), "sessions", "list", "--json")
    assert len(json.loads(out)) == SESSIONS
    t["cli_json"] = measure(
        lambda: run_cli("--home", str(home), "sessions", "list", "--json"), CLI_REPEATS, True
    )
    t["cli_text"] = measure(
        lambda: run_cli("--home", str(home), "sessions", "list"), CLI_REPEATS, True
    )
    t["cli_help"] = measure(lambda: run_cli("--help"), CLI_REPEATS, True)
    return {
        "sessions": SESSIONS,
        "fill_s": round(fill_s, 2),
        "db_bytes": db_path.stat().st_size,
        "query_plan": plan,
        "timings": {name: timing.record() for name, timing in t.items()},
    }


def machine_speed() -> float:
    """Seconds for 10 million empty Python loop iterations: a yardstick for other machines."""
    start = time.perf_counter()
    for _ in range(10_000_000):
        pass
    return time.perf_counter() - start


def main() -> None:
    load_before = os.getloadavg()
    loop_s = machine_speed()
    with tempfile.TemporaryDirectory(prefix="taskerino-bench-") as tmp:
        folder = Path(tmp)
        tx = bench_transactions(folder)
        ls = bench_list(folder)

    lt = ls["timings"]
    w, c = tx["wall_ms"], tx["cpu_ms"]
    allst = "plain_all_store_statements"
    target_ms = f"≤ {LIST_TARGET_MS:.0f} ms"

    def row(what: str, name: str, target: str = "(breakdown)") -> Row:
        return (
            what,
            f"{lt[name]['wall_ms']:.1f} ms",
            f"{lt[name]['cpu_ms']:.1f} ms",
            target,
            lt[name]["wall_ms"] <= LIST_TARGET_MS if target == target_ms else None,
        )

    cli_net = lt["cli_json"]["wall_ms"] - lt["cli_help"]["wall_ms"]
    cli_net_cpu = lt["cli_json"]["cpu_ms"] - lt["cli_help"]["cpu_ms"]
    table: list[Row] = [
        (
            "plain sqlite3, same INSERTs",
            f"{w['plain']:.0f} ms",
            f"{c['plain']:.0f} ms",
            "(reference)",
            None,
        ),
        (
            "store.transaction() + methods",
            f"{w['store']:.0f} ms",
            f"{c['store']:.0f} ms",
            "—",
            None,
        ),
        (
            "store ÷ plain sqlite3",
            f"{tx['ratio_wall']:.2f}×",
            f"{tx['ratio_cpu']:.2f}×",
            f"≤ {TX_TARGET}×",
            tx["ratio_wall"] <= TX_TARGET,
        ),
        (
            f"plain, all {tx['store_statements_per_transaction']} store statements",
            f"{w[allst]:.0f} ms",
            f"{c[allst]:.0f} ms",
            "(breakdown)",
            None,
        ),
        (
            "  that ÷ plain sqlite3",
            f"{tx['ratio_wall_all_store_statements']:.2f}×",
            f"{tx['ratio_cpu_all_store_statements']:.2f}×",
            "(breakdown)",
            None,
        ),
        (
            "store's Session → parameters",
            f"{tx['session_values_ms']:.0f} ms",
            "",
            "(breakdown)",
            None,
        ),
        row("list: its SQL alone (raw sqlite3)", "sql_alone"),
        row("store.list_sessions()", "store", target_ms),
        row(f"  list_sessions(limit={PAGE}), for comparison", "store_page"),
        row("Taskerino.list_sessions()", "api", target_ms),
        row("Taskerino open + list + close", "api_open_list_close", target_ms),
        row("  open + close alone", "api_open_close"),
        row("  store.attachment_hashes() (in open)", "attachment_hashes"),
        row("CLI --json: asdict() of the rows", "asdict"),
        row("CLI --json: json.dumps(indent=2)", "dumps_indent"),
        row("  json.dumps without indent", "dumps_compact"),
        row("CLI `sessions list --json`", "cli_json"),
        row("CLI `sessions list` (text)", "cli_text"),
        row("CLI start-up (`--help`)", "cli_help"),
        (
            "CLI --json minus start-up",
            f"{cli_net:.0f} ms",
            f"{cli_net_cpu:.0f} ms",
            target_ms,
            cli_net <= LIST_TARGET_MS,
        ),
    ]
    print(
        f"store, {TX:,} transactions × {tx['inserts_per_transaction']} INSERTs "
        f"(median of {TX_REPEATS}); {SESSIONS:,} sessions listed (median of {LIST_REPEATS}; "
        f"open: {OPEN_REPEATS}; CLI: {CLI_REPEATS})"
    )
    print(
        f"{os.cpu_count()} cores, SQLite {sqlite3.sqlite_version}, Python "
        f"{platform.python_version()}; 10M-iteration Python loop {loop_s:.2f} s; "
        f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'what':40} {'wall':>10} {'CPU':>10} {'target':>12}  ok")
    for what, wall, cpu, target, ok in table:
        mark = "" if ok is None else "yes" if ok else "NO"
        print(f"{what:40} {wall:>10} {cpu:>10} {target:>12}  {mark}")
    print("query plan of list_sessions():")
    for line in ls["query_plan"]:
        print(f"  {line}")

    record = {
        "benchmark": "store transactions and sessions list (spec §10)",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python_10M_loop_s": round(loop_s, 3),
        "targets": {"store_vs_plain_sqlite": TX_TARGET, "sessions_list_ms": LIST_TARGET_MS},
        "results": {"transactions": tx, "sessions_list": ls},
    }
    out = Path(__file__).parent / "results" / "store.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
