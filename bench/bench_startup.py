"""Listing 10 000 sessions and the CLI's start-up against spec §10, in one run.

Run: .venv/bin/python bench/bench_startup.py [--runs 20] [--name startup]

1. `Taskerino.list_sessions()` over 10 000 completed sessions (filled as bench_store.py
   fills them: tags shared by project, every 4th with video, every 3rd with audio), the
   library call in this process: median wall and CPU of `--repeats` calls (target ≤ 50 ms).
2. Whole commands, start to exit, as a person types them: `taskerino --help` and
   `taskerino sessions list` on an empty store (target ≤ 150 ms), and `sessions list` on
   the 10 000 sessions for scale. Each run is paired with the reference `python -c pass`
   (the interpreter's own start-up), run in turn A B A B ..., and the ratio is taken pair
   by pair. Wall time from before the start to after the exit; CPU is the child's user +
   system time from `os.wait4`. The package is byte-compiled first, as an installation
   from a wheel is.

Writes bench/results/<name>.json and <name>.md.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_store
import taskerino as taskerino_package
from taskerino.sessions import Taskerino

RESULTS = Path(__file__).parent / "results"
SESSIONS = 10_000
LIST_TARGET_MS = 50.0
START_TARGET_MS = 150.0


def run_once(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one whole command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def paired(cmd: list[str], reference: list[str], runs: int) -> dict[str, Any]:
    run_once(cmd)  # warm-up: the page cache holds the files afterwards
    run_once(reference)
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    for _ in range(runs):
        a.append(run_once(cmd))
        b.append(run_once(reference))
    walls = [x[0] for x in a]
    return {
        "wall_ms": statistics.median(walls),
        "wall_min_ms": min(walls),
        "wall_max_ms": max(walls),
        "cpu_ms": statistics.median(x[1] for x in a),
        "reference_wall_ms": statistics.median(x[0] for x in b),
        "reference_cpu_ms": statistics.median(x[1] for x in b),
        "ratio_wall": statistics.median(x[0] / y[0] for x, y in zip(a, b, strict=True)),
    }


def timed_calls(call: Any, repeats: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, start = time.process_time(), time.perf_counter()
        call()
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return {
        "wall_ms": statistics.median(walls),
        "wall_min_ms": min(walls),
        "wall_max_ms": max(walls),
        "cpu_ms": statistics.median(cpus),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command")
    parser.add_argument("--repeats", type=int, default=30, help="calls of list_sessions")
    parser.add_argument("--name", default="startup")
    args = parser.parse_args()
    package = Path(taskerino_package.__file__ or ".").parent
    compileall.compile_dir(str(package), quiet=1)
    taskerino = [sys.executable, "-m", "taskerino"]
    reference = [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory(prefix="taskerino-bench-startup-") as scratch:
        empty, full = Path(scratch) / "empty", Path(scratch) / "full"
        empty.mkdir()
        full.mkdir()
        subprocess.run([*taskerino, "--home", str(empty), "sessions", "list"], check=True)
        bench_store.fill(full, SESSIONS)
        library = Taskerino.open(full)
        try:
            assert len(library.list_sessions()) == SESSIONS
            listing = timed_calls(library.list_sessions, args.repeats)
        finally:
            library.close()
        commands = {
            "taskerino --help": [*taskerino, "--help"],
            "taskerino sessions list (empty store)": [
                *taskerino, "--home", str(empty), "sessions", "list"
            ],
            f"taskerino sessions list ({SESSIONS} sessions)": [
                *taskerino, "--home", str(full), "sessions", "list"
            ],
        }  # fmt: skip
        started = {name: paired(cmd, reference, args.runs) for name, cmd in commands.items()}
    load = os.getloadavg()
    payload: dict[str, Any] = {
        "benchmark": "listing and start-up",
        "command": "python bench/bench_startup.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": load,
        "results": {"list_sessions": listing, "commands": started},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Listing and start-up (spec §10)",
        "",
        f"`{payload['command']}` — {payload['cpus']} CPUs, Python {payload['python']}, "
        f"load average after {load[0]:.2f}",
        "",
        "| what | median wall | min–max | CPU | reference `python -c pass` | ratio | target |",
        "|---|---|---|---|---|---|---|",
        f"| `Taskerino.list_sessions()`, {SESSIONS} sessions (in process, "
        f"{args.repeats} calls) | **{listing['wall_ms']:.1f} ms** | "
        f"{listing['wall_min_ms']:.1f}–{listing['wall_max_ms']:.1f} | "
        f"{listing['cpu_ms']:.1f} ms | | | ≤ {LIST_TARGET_MS:.0f} ms |",
    ]
    for name, r in started.items():
        target = "(scale)" if str(SESSIONS) in name else f"≤ {START_TARGET_MS:.0f} ms"
        lines.append(
            f"| `{name}` ({args.runs} runs) | **{r['wall_ms']:.0f} ms** | "
            f"{r['wall_min_ms']:.0f}–{r['wall_max_ms']:.0f} | {r['cpu_ms']:.0f} ms | "
            f"{r['reference_wall_ms']:.0f} ms ({r['reference_cpu_ms']:.0f} ms CPU) | "
            f"{r['ratio_wall']:.1f}× | {target} |"
        )
    lines += [
        "",
        "The CLI imports what a command needs when it runs: `--help` loads click and the "
        "rule book only; the front door (store, recorders) and the data model come with the "
        "first command that uses them; video, audio, OCR and the web stack only with "
        "`record`, `enrich`/`worker` and `serve`.",
        "",
    ]
    text = "\n".join(lines)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
