"""Persistence queue against spec §10, with plain sqlite3 executemany as the reference.

Run: .venv/bin/python bench/bench_queue.py  (writes bench/results/queue.json)

Every figure uses a real SQLite file (WAL, synchronous=NORMAL) written through a sink that
does one executemany per batch in one transaction, with the writer thread running while
the caller enqueues, as in a recording.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from taskerino.store.queue import PersistenceQueue

N = 200_000
FLUSH_ITEMS = 1_000
FLUSH_REPEATS = 10
Row = tuple[str, str]
_files = itertools.count()
INSERT = "INSERT INTO items (session_id, payload) VALUES (?, ?)"


def connect(folder: Path, name: str) -> sqlite3.Connection:
    """A fresh database file for each measurement."""
    path = folder / f"{name}-{next(_files)}.db"
    # The writer thread uses the connection; only it touches it while the queue runs.
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, session_id TEXT, payload TEXT)")
    return db


def make_rows(n: int) -> list[Row]:
    return [
        (f"session-{i % 7}", f'{{"kind": "stats", "frame": {i}, "fps": 15.0, "drop": 0.001}}')
        for i in range(n)
    ]


class SQLiteSink:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __call__(self, rows: Sequence[Row]) -> None:
        self.db.execute("BEGIN")
        try:
            self.db.executemany(INSERT, rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM items").fetchone()[0])


def new_queue(
    folder: Path, name: str, bound: int
) -> tuple[PersistenceQueue[Row], sqlite3.Connection]:
    db = connect(folder, name)
    return PersistenceQueue(SQLiteSink(db), bound=bound), db


def enqueue_latency(folder: Path, rows: list[Row], bound: int) -> dict[str, float]:
    queue, db = new_queue(folder, f"latency-{bound}", bound)
    clock = time.perf_counter_ns
    enqueue = queue.enqueue
    samples = [0] * len(rows)
    for i, row in enumerate(rows):
        start = clock()
        enqueue(row)
        samples[i] = clock() - start
    queue.shutdown()
    stats = queue.stats()
    db.close()
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "max_us": samples[-1] / 1000,
        "dropped": stats.dropped,
    }


def enqueue_rate(folder: Path, rows: list[Row]) -> float:
    queue, db = new_queue(folder, "rate", len(rows) + 1)
    enqueue = queue.enqueue
    start = time.perf_counter()
    for row in rows:
        enqueue(row)
    elapsed = time.perf_counter() - start
    queue.shutdown()
    db.close()
    return len(rows) / elapsed


def written_rate(folder: Path, rows: list[Row]) -> float:
    queue, db = new_queue(folder, "written", len(rows) + 1)
    enqueue = queue.enqueue
    start = time.perf_counter()
    for row in rows:
        enqueue(row)
    assert queue.flush()
    elapsed = time.perf_counter() - start
    queue.shutdown()
    assert count(db) == len(rows), "the queue lost rows"
    db.close()
    return len(rows) / elapsed


def flush_time(folder: Path, rows: list[Row]) -> float:
    """Seconds from flush() to return for FLUSH_ITEMS freshly enqueued items (worst run)."""
    queue, db = new_queue(folder, "flush", 1000)
    times = []
    for _ in range(FLUSH_REPEATS):
        for row in rows[:FLUSH_ITEMS]:
            queue.enqueue(row)
        start = time.perf_counter()
        assert queue.flush()
        times.append(time.perf_counter() - start)
    queue.shutdown()
    assert count(db) == FLUSH_ITEMS * FLUSH_REPEATS
    db.close()
    return max(times)


def plain_sqlite_rate(folder: Path, rows: list[Row]) -> float:
    db = connect(folder, "plain")
    start = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(INSERT, rows)
    db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return len(rows) / elapsed


def main() -> None:
    rows = make_rows(N)
    with tempfile.TemporaryDirectory(prefix="taskerino-bench-") as tmp:
        folder = Path(tmp)
        latency = enqueue_latency(folder, rows, bound=N + 1)
        latency_full = enqueue_latency(folder, rows, bound=1000)
        rate = statistics.median(enqueue_rate(folder, rows) for _ in range(3))
        written = statistics.median(written_rate(folder, rows) for _ in range(3))
        plain = statistics.median(plain_sqlite_rate(folder, rows) for _ in range(3))
        flush = flush_time(folder, rows)

    results = {
        "enqueue_p50_us": round(latency["p50_us"], 2),
        "enqueue_p99_us": round(latency["p99_us"], 2),
        "enqueue_max_us": round(latency["max_us"], 1),
        "enqueue_p99_us_default_bound": round(latency_full["p99_us"], 2),
        "dropped_at_default_bound": latency_full["dropped"],
        "enqueues_per_s": round(rate),
        "written_items_per_s": round(written),
        "plain_sqlite_items_per_s": round(plain),
        "written_vs_plain_sqlite": round(written / plain, 3),
        "flush_1000_s": round(flush, 4),
    }
    table = [
        ("enqueue p50", f"{latency['p50_us']:.2f} µs", "—", True),
        ("enqueue p99", f"{latency['p99_us']:.2f} µs", "≤ 20 µs", latency["p99_us"] <= 20),
        (
            "enqueue p99, bound 1000 (dropping)",
            f"{latency_full['p99_us']:.2f} µs",
            "≤ 20 µs",
            latency_full["p99_us"] <= 20,
        ),
        ("enqueues per second", f"{rate:,.0f}", "≥ 100,000", rate >= 100_000),
        ("items/s written to SQLite", f"{written:,.0f}", "≥ 50,000", written >= 50_000),
        ("plain sqlite3 executemany items/s", f"{plain:,.0f}", "(reference)", True),
        ("queue ÷ plain sqlite3", f"{written / plain:.2f}×", "—", True),
        ("flush of 1,000 items (worst of 10)", f"{flush * 1000:.1f} ms", "≤ 1 s", flush <= 1),
    ]
    print(f"persistence queue, {N:,} rows, {os.cpu_count()} cores, SQLite {sqlite3.sqlite_version}")
    print(f"{'what':38} {'measured':>16} {'target':>12}  ok")
    for what, measured, target, ok in table:
        print(f"{what:38} {measured:>16} {target:>12}  {'yes' if ok else 'NO'}")

    record = {
        "benchmark": "persistence queue (spec §10)",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "rows": N,
        "targets": {
            "enqueue_p99_us": 20,
            "enqueues_per_s": 100_000,
            "written_items_per_s": 50_000,
            "flush_1000_s": 1.0,
        },
        "results": results,
    }
    out = Path(__file__).parent / "results" / "queue.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
