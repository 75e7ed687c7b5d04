"""How soon a waiting process hears of a change: `Store.watch` on PostgreSQL beside SQLite.

Run: .venv/bin/python bench/bench_notify.py [--rounds 200]
     (writes bench/results/notify.json and .md)

One store object pushes a command for a session (`push_command`, its own transaction);
another, in another process, waits on a watch of that session's commands
(`Topic.commands`) and takes the command when woken. Measured: from the push's start to
the wake, p50/p95/max over ROUNDS pushes, one at a time. PostgreSQL: LISTEN/NOTIFY, a
throw-away cluster of Debian's server on loopback (`tests/postgres_server.py`); SQLite:
the embedded store's `data_version` look, ten times a second. Before the watch, a recorder
looked for commands every 0.2 s: 100 ms on average, 200 ms at worst.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository's root, for the tests' throw-away PostgreSQL cluster.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres_server import postgres_server

from taskerino.models import Session, new_id, utc_now
from taskerino.store import open_store
from taskerino.store.watch import Topic

RESULTS = Path(__file__).resolve().parent / "results"


def waiter(url: str, session_id: str, rounds: int, ready: Any, out: Any) -> None:
    """Wait for each command and report when it was woken (perf_counter is system-wide)."""
    store = open_store(url, Path("unused.db"))
    woken: list[float] = []
    with store.watch([Topic.commands(session_id)]) as watch:
        ready.set()
        while len(woken) < rounds:
            if not watch.wait(30.0):
                break
            at = time.perf_counter()
            taken = store.take_commands(session_id)
            woken += [at] * len(taken)
    store.close()
    out.put(woken)


def measure(url: str, rounds: int) -> list[float]:
    store = open_store(url, Path("unused.db"))
    session = Session(id=new_id(), name="bench", start_time=utc_now())
    store.create_session(session)
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=waiter, args=(url, session.id, rounds, ready, out))
    proc.start()
    ready.wait(60)
    time.sleep(0.5)
    pushed = []
    for _ in range(rounds):
        pushed.append(time.perf_counter())
        store.push_command(session.id, "pause")
        time.sleep(0.25)  # one at a time: the waiter has taken it
    woken = out.get(timeout=120)
    proc.join(60)
    store.close()
    return [w - p for p, w in zip(pushed, woken, strict=True)]


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "rounds": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    found: dict[str, Any] = {"python": platform.python_version(), "rounds": rounds}
    with tempfile.TemporaryDirectory() as folder:
        found["sqlite"] = summary(measure(f"sqlite://{folder}/bench.db", rounds))
    with postgres_server() as server:
        found["postgresql"] = summary(measure(server.new_database(migrated=True), rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "notify.json").write_text(json.dumps(found, indent=2) + "\n")
    lines = [
        "# Waking on a command (`bench/bench_notify.py`)",
        "",
        f"From `push_command` to the wake of a watch in another process, {rounds} commands.",
        "Before: a recorder looked every 0.2 s (100 ms on average, 200 ms at worst).",
        "",
        "| store | p50 | p95 | max |",
        "|---|---|---|---|",
    ]
    for name in ("postgresql", "sqlite"):
        r = found[name]
        lines.append(f"| {name} | {r['p50_ms']} ms | {r['p95_ms']} ms | {r['max_ms']} ms |")
    (RESULTS / "notify.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
