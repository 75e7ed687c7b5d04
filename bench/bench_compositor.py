"""Four 1920x1080 BGRA sources composed into a 1920x1080 grid (spec §10: ≤ 2 ms a frame).

Measures `Compositor.compose` with a fresh output array per call (the default) and with
a ring of reused output buffers. Prints a table and writes bench/results/compositor.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from taskerino.media.compositor import Compositor

REPS = 300
WIDTH, HEIGHT = 1920, 1080


def measure(ring: int, sources: list[np.typing.NDArray[np.uint8]]) -> dict[str, float]:
    comp = Compositor("grid", len(sources), WIDTH, HEIGHT, ring=ring)
    for _ in range(10):  # warm up (allocator, OpenCV threads)
        comp.compose(sources)
    times = []
    for _ in range(REPS):
        started = time.perf_counter()
        comp.compose(sources)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {
        "mean_ms": float(ms.mean()),
        "median_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def main() -> None:
    rng = np.random.default_rng(0)
    sources = [rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8) for _ in range(4)]
    results = {
        "fresh output": measure(0, sources),
        "ring of 4 buffers": measure(4, sources),
    }
    print(f"4 x {WIDTH}x{HEIGHT} -> {WIDTH}x{HEIGHT} grid, {REPS} compositions (target ≤ 2 ms)")
    print(f"{'output':<20}{'mean ms':>10}{'median ms':>12}{'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:<20}{r['mean_ms']:>10.2f}{r['median_ms']:>12.2f}{r['p99_ms']:>10.2f}")
    out = Path(__file__).parent / "results" / "compositor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "compositor",
        "sources": 4,
        "source_size": [WIDTH, HEIGHT],
        "output_size": [WIDTH, HEIGHT],
        "repetitions": REPS,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
