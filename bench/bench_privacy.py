"""Privacy at capture time on Xvfb: what a window source and exclusions cost.

a. A 1280x720 window captured as `window:ID` (its own pixels through Composite: name the
   window's storage, read it with XCB) against the old way, mss grabbing its screen area
   (the reference, measured in the same run).
b. Grabbing display:1 (1920x1080) through the back end with exclusions, against the same
   back end without (the reference): with N excluded windows among 8 others, still and
   moved before every grab (each move is an event the tracker follows; the reference
   grabs follow the same moves). CPU is the grabbing thread's (`time.thread_time`): the
   grab, the round trips and the masking; the X server's own work is not in it.

Writes bench/results/privacy.md and privacy.json; prints the tables.
`python bench/bench_privacy.py [--reps N]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
from Xlib import X
from Xlib import display as xlib
from Xlib.xobject.drawable import Window

from taskerino.capture.x11 import X11Backend
from taskerino.virtual import VirtualDisplay

RESULTS = Path(__file__).parent / "results"
OTHERS = 8  # windows that are not excluded, on the screen in every run


def compare(
    grabs: dict[str, Callable[[], object]], reps: int, between: Callable[[], None]
) -> dict[str, dict[str, float]]:
    """Each grab of `grabs` in turn, `reps` times over (so that a load that comes and goes
    on the machine weighs on all alike): wall ms (mean, median, p99) and CPU ms of this
    thread (mean; the grab and the masking run on it). `between` runs before each grab,
    untimed, the same for all."""
    walls: dict[str, list[float]] = {name: [] for name in grabs}
    cpus: dict[str, list[float]] = {name: [] for name in grabs}
    for rep in range(reps + 10):
        for name, grab in grabs.items():
            between()
            cpu, wall = time.thread_time(), time.perf_counter()
            grab()
            if rep >= 10:  # the first ten warm up
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.thread_time() - cpu)
    result = {}
    for name in grabs:
        ms = np.array(walls[name]) * 1000
        result[name] = {
            "wall_mean_ms": float(ms.mean()),
            "wall_median_ms": float(np.median(ms)),
            "wall_p99_ms": float(np.percentile(ms, 99)),
            "cpu_ms": float(np.mean(cpus[name]) * 1000),
        }
    return result


def nothing() -> None:
    pass


def mover(d: xlib.Display, windows: list[Window]) -> Callable[[], None]:
    """Moves every window a little, as a drag does, and sends the requests."""
    step = [0]

    def move() -> None:
        step[0] += 1
        for i, win in enumerate(windows):
            win.configure(x=60 * i + step[0] % 50, y=40 * i)
        d.flush()

    return move


def grabber(backend: X11Backend, region: dict[str, int]) -> Callable[[], object]:
    return lambda: backend.grab_region(region)


def window(d: xlib.Display, x: int, y: int, w: int, h: int, pixel: int, title: str) -> Window:
    screen = d.screen()
    win = screen.root.create_window(
        x,
        y,
        w,
        h,
        0,
        screen.root_depth,
        X.InputOutput,
        X.CopyFromParent,
        background_pixel=pixel,
        override_redirect=True,
    )
    win.set_wm_name(title)
    win.set_wm_class("bench", "Bench")
    win.map()
    return cast(Window, win)


def window_source(name: str, reps: int) -> dict[str, Any]:
    d = xlib.Display(name)
    target = window(d, 100, 100, 1280, 720, 0xFF8000, "Window source")
    window(d, 100, 100, 640, 360, 0x00FF80, "Cover")  # covers a quarter of it
    d.sync()
    backend = X11Backend(name)
    try:
        source = backend.open(f"window:{target.id:#x}")
        region = {"left": 100, "top": 100, "width": 1280, "height": 720}
        try:
            return compare(
                {
                    "composite window source": source.grab,
                    "screen area grab (reference)": grabber(backend, region),
                },
                reps,
                nothing,
            )
        finally:
            source.close()
    finally:
        backend.close()
        d.close()


def exclusions(name: str, reps: int, counts: list[int]) -> dict[str, Any]:
    d = xlib.Display(name)
    for i in range(OTHERS):
        window(d, 40 + 200 * i, 700, 180, 120, 0x3060A0, f"Editor {i}")
    results: dict[str, Any] = {}
    region = {"left": 0, "top": 0, "width": 1920, "height": 1080}
    for n in counts:
        hidden = [window(d, 60 * i, 40 * i, 400, 300, 0xFF00FF, f"Vault {i}") for i in range(n)]
        d.sync()
        for label, between in (("still", nothing), ("moved every grab", mover(d, hidden))):
            plain = X11Backend(name)
            masked = X11Backend(name)
            masked.exclude(["*vault*"])
            try:
                results[f"{n} excluded, {label}"] = compare(
                    {
                        "reference": grabber(plain, region),
                        "with exclusions": grabber(masked, region),
                    },
                    reps,
                    between,
                )
            finally:
                plain.close()
                masked.close()
        for win in hidden:
            win.destroy()
        d.sync()
    d.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    args = parser.parse_args()
    counts = [0, 1, 4, 16]
    load_before = os.getloadavg()[0]
    with VirtualDisplay() as screen:
        a = window_source(screen.name, args.reps)
        b = exclusions(screen.name, args.reps, counts)
    area = a["screen area grab (reference)"]
    lines = [
        "# Privacy at capture time (spec §12)",
        "",
        f"`python bench/bench_privacy.py --reps {args.reps}` — {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, Xvfb; {args.reps} grabs each; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (the machine is shared)",
        "",
        "## a. A 1280x720 window: its own pixels (Composite) against its screen area",
        "",
        "| grab | wall mean / median / p99 ms | CPU ms | ratio (CPU) |",
        "|---|---|---|---|",
    ]
    for label, r in a.items():
        ratio = r["cpu_ms"] / area["cpu_ms"]
        lines.append(
            f"| {label} | {r['wall_mean_ms']:.2f} / {r['wall_median_ms']:.2f} / "
            f"{r['wall_p99_ms']:.2f} | {r['cpu_ms']:.2f} | {ratio:.1f}x |"
        )
    lines += [
        "",
        f"## b. display:1 (1920x1080) with exclusions ({OTHERS} other windows on screen)",
        "",
        "| excluded windows | CPU ms a grab: reference / with | extra CPU ms a grab "
        "| each excluded window adds | at 15 fps, % of a core | wall median ms: ref / with |",
        "|---|---|---|---|---|---|",
    ]
    base: dict[str, float] = {}  # the extra CPU with patterns that match nothing
    for label, r in b.items():
        n, kind = int(label.split()[0]), label.split(", ")[1]
        ref, run = r["reference"], r["with exclusions"]
        extra = run["cpu_ms"] - ref["cpu_ms"]
        base.setdefault(kind, extra)
        each = f"{(extra - base[kind]) / n:+.3f} ms" if n else "(fixed cost)"
        lines.append(
            f"| {label} | {ref['cpu_ms']:.3f} / {run['cpu_ms']:.3f} | {extra:+.3f} "
            f"| {each} | {extra * 15 / 10:+.2f} % "
            f"| {ref['wall_median_ms']:.2f} / {run['wall_median_ms']:.2f} |"
        )
    lines += [
        "",
        "CPU is the grabbing thread's (the X server's share is not counted); the reference "
        "and the masked grabs alternate. 'moved every grab' moves every excluded window "
        "before each grab, the reference's too, so the difference is what following the "
        "events and blacking out costs. With 0 excluded, the patterns match none of the "
        "windows: the fixed cost of two round trips to the X server (before and after each "
        "grab); 'each excluded window adds' is the rest divided by their number.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "privacy.md").write_text(text)
    payload = {
        "benchmark": "privacy",
        "reps": args.reps,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "window_source": a,
        "exclusions": b,
    }
    (RESULTS / "privacy.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
