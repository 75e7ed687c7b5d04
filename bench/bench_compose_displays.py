"""Four real 1920x1080 X sources into a 1920x1080 grid at 30 fps (spec §10: composition
≤ 2 ms a frame, drops < 1 %), each changing whole on every frame.

Run: .venv/bin/python bench/bench_compose_displays.py [--rounds 4] [--seconds 10]

On a fresh Xvfb of 3840x2160 split into four RandR monitors, a drawing process repaints
four pictures whole 30 times a second (a new background colour, a bar that sweeps across
and a counter: what four full-screen videos would do), and the library records them into
a 1920x1080 grid at 30 fps. Two workloads:

- displays: the pictures are drawn on the four monitors, recorded as display:1..4;
- windows: they are drawn into four 1920x1080 windows, one on each monitor, recorded as
  window:ID (each read from its own off-screen storage).

On each, two variants alternate round by round in one run:

- `scaled as it is read` (what Taskerino does): each source, shown at half size in its
  cell, is scaled as it is read, straight out of the server's shared memory
  (`Source.show_at`); the compositor copies 960x540 cells;
- `scaled in the compositor` (before): each read copies the whole 1920x1080 picture
  into a fresh frame, which is compared with the last one, queued, and halved by the
  compositor.

Per variant: the compositor's time per composition, the sources' time per grab (the
scaling included where it is done there), the recorder process's CPU, the X server's and
the drawing process's CPU, frames and drops. All three processes share the 2 cores.

Writes bench/results/compose-displays.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import taskerino.capture.x11 as x11
from bench_compositor import round_figures, summary
from taskerino.media import Compositor
from taskerino.models import SessionConfig
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualDisplay

RESULTS = Path(__file__).parent / "results"
WIDTH, HEIGHT, FPS = 1920, 1080, 30
TARGET_MS = 2.0
VARIANTS = ["scaled as it is read", "scaled in the compositor"]
WORKLOADS = ["displays", "windows"]
SOURCES: dict[str, Any] = {"displays": x11._DisplaySource, "windows": x11._WindowSource}
MONITORS = [(0, 0), (WIDTH, 0), (0, HEIGHT), (WIDTH, HEIGHT)]

# The drawing process: four pictures repainted whole on every frame, on the root (the
# monitors) or in four windows of their own (their ids printed first).
DRAWER = """
import sys, time
from Xlib import X, display
d = display.Display(sys.argv[1])
screen = d.screen()
root = screen.root
width, height, fps, mode = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
monitors = [(0, 0), (width, 0), (0, height), (width, height)]
targets = []
for x, y in monitors:
    if mode == "windows":
        window = root.create_window(
            x, y, width, height, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
            background_pixel=0, override_redirect=True,
        )
        window.set_wm_name(f"picture {len(targets) + 1}")  # windows without a title are not listed
        window.map()
        targets.append((window, 0, 0))
    else:
        targets.append((root, x, y))
d.sync()
print(" ".join(hex(t.id) for t, _, _ in targets), flush=True)
font = d.open_font("fixed")
gcs = [root.create_gc(foreground=0, font=font) for _ in monitors]
period, start, n = 1.0 / fps, time.monotonic(), 0
while True:
    n += 1
    for i, ((target, x, y), gc) in enumerate(zip(targets, gcs)):
        colour = ((n * 7 + i * 60) % 256) << 16 | ((n * 3 + i * 90) % 256) << 8 | (i * 70 % 256)
        gc.change(foreground=colour)
        target.fill_rectangle(gc, x, y, width, height)
        gc.change(foreground=0xFFFFFF)
        bar = (n * 16 + i * 200) % (width - 120)
        target.fill_rectangle(gc, x + bar, y, 120, height)
        target.image_text(gc, x + 40, y + 60, f"picture {i + 1} frame {n}")
    d.sync()
    delay = start + n * period - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(original: Callable[..., Any], sink: list[float]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            sink.append((time.perf_counter() - started) * 1000)

    return call


def record_round(
    library: Taskerino, sources: list[str], variant: str, seconds: float, pids: dict[str, int]
) -> dict[str, Any]:
    config = SessionConfig(
        screenshots=False,
        video=True,
        compositor="grid",
        fps=FPS,
        width=WIDTH,
        height=HEIGHT,
        sources=sources,
    )
    load = os.getloadavg()[0]
    usage0 = os.times()
    others0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    session = library.start(StartRequest(name=variant, config=config))
    started = time.monotonic()
    time.sleep(seconds)
    final = library.stats(session.id)
    wall = time.monotonic() - started
    others1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    library.end(session.id)
    usage1 = os.times()
    return {
        **round_figures(load, wall, final),
        # The end (joining chunks) is in the recorder's figure too, the same in both.
        "recorder_cpu_s": (usage1.user + usage1.system) - (usage0.user + usage0.system),
        **{f"{name}_cpu_s": others1[name] - others0[name] for name in pids},
    }


def run(workload: str, rounds: int, seconds: float) -> dict[str, Any]:
    compose_ms: list[float] = []
    grab_ms: list[float] = []
    source_class = SOURCES[workload]
    real_compose, real_grab, real_show_at = (
        Compositor.compose,
        source_class.grab,
        source_class.show_at,
    )
    per: dict[str, dict[str, Any]] = {
        v: {"compose": [], "grab": [], "rounds": []} for v in VARIANTS
    }
    with (
        VirtualDisplay(2 * WIDTH, 2 * HEIGHT, monitors=False) as screen,
        tempfile.TemporaryDirectory(prefix="taskerino-bench-displays-") as scratch,
    ):
        env = {**os.environ, "DISPLAY": screen.name}
        for i, (x, y) in enumerate(MONITORS):
            subprocess.run(
                [
                    "xrandr",
                    "--setmonitor",
                    f"M{i + 1}",
                    f"{WIDTH}/508x{HEIGHT}/286+{x}+{y}",
                    "none",
                ],
                env=env,
                check=True,
                capture_output=True,
            )
        mode = "windows" if workload == "windows" else "root"
        drawer = subprocess.Popen(
            [sys.executable, "-c", DRAWER, screen.name, str(WIDTH), str(HEIGHT), str(FPS), mode],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert drawer.stdout is not None
        ids = drawer.stdout.readline().split()
        sources = (
            [f"window:{i}" for i in ids]
            if workload == "windows"
            else [f"display:{i + 1}" for i in range(4)]
        )
        os.environ["DISPLAY"] = screen.name
        library = Taskerino.open(Path(scratch), recover=False)
        try:
            Compositor.compose = timed(real_compose, compose_ms)  # type: ignore[method-assign]
            source_class.grab = timed(real_grab, grab_ms)
            pids = {"x_server": screen._proc.pid, "drawer": drawer.pid}
            for r in range(rounds):
                order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    print(f"  {workload}, round {r + 1}: {variant}", flush=True)
                    if variant == "scaled in the compositor":
                        source_class.show_at = lambda self, width, height: False
                    else:
                        source_class.show_at = real_show_at
                    compose_ms.clear()
                    grab_ms.clear()
                    info = record_round(library, sources, variant, seconds, pids)
                    per[variant]["compose"] += compose_ms[10:]  # the first ones warm up
                    per[variant]["grab"] += grab_ms[40:]
                    per[variant]["rounds"].append(info)
        finally:
            Compositor.compose = real_compose  # type: ignore[method-assign]
            source_class.grab = real_grab
            source_class.show_at = real_show_at
            library.close()
            drawer.kill()
            drawer.wait()
    results: dict[str, Any] = {}
    for variant, p in per.items():
        rs = p["rounds"]
        wall = sum(x["seconds"] for x in rs)
        frames = sum(x["frames_processed"] for x in rs)
        results[variant] = {
            "compose": summary(p["compose"]),
            "grab": summary(p["grab"]),
            "drop_rate": float(np.mean([x["drop_rate"] for x in rs])),
            "frames_processed_per_s": frames / wall,
            "recorder_cpu_s_per_s": sum(x["recorder_cpu_s"] for x in rs) / wall,
            "x_server_cpu_s_per_s": sum(x["x_server_cpu_s"] for x in rs) / wall,
            "drawer_cpu_s_per_s": sum(x["drawer_cpu_s"] for x in rs) / wall,
            "recorder_cpu_ms_per_frame": 1000 * sum(x["recorder_cpu_s"] for x in rs) / frames,
            "rounds": rs,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per variant")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a round")
    parser.add_argument("--name", default="compose-displays")
    args = parser.parse_args()
    load0 = os.getloadavg()
    results = {w: run(w, args.rounds, args.seconds) for w in WORKLOADS}
    load1 = os.getloadavg()
    command = "python bench/bench_compose_displays.py " + " ".join(sys.argv[1:])
    lines = [
        "# Four 1920x1080 X sources, each changing whole on every frame, into a 1920x1080 "
        "grid at 30 fps (spec §10: composition ≤ 2 ms, drops < 1 %)",
        "",
        f"`{command}` — {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__}; load average (1, 5, 15 min) "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at the start, "
        f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end. {args.rounds} rounds of "
        f"{args.seconds:.0f} s per variant and workload, alternating, in one run.",
        "",
        "| sources | variant | composition median ms | p99 ms | grab of one source, median "
        "ms | p99 ms | frames/s | drop rate | recorder CPU s/s | recorder CPU ms a frame "
        "| X server CPU s/s | drawing CPU s/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, per in results.items():
        for variant, s in per.items():
            c, g = s["compose"], s["grab"]
            lines.append(
                f"| {workload} | {variant} | {c['median_ms']:.2f} | {c['p99_ms']:.2f} "
                f"| {g['median_ms']:.2f} | {g['p99_ms']:.2f} "
                f"| {s['frames_processed_per_s']:.1f} | {100 * s['drop_rate']:.2f} % "
                f"| {s['recorder_cpu_s_per_s']:.2f} | {s['recorder_cpu_ms_per_frame']:.1f} "
                f"| {s['x_server_cpu_s_per_s']:.2f} | {s['drawer_cpu_s_per_s']:.2f} |"
            )
    lines.append("")
    for workload, per in results.items():
        now, before = per[VARIANTS[0]], per[VARIANTS[1]]
        met = "met" if now["compose"]["median_ms"] <= TARGET_MS else "not met"
        lines.append(
            f"- {workload}: composition {now['compose']['median_ms']:.2f} ms against "
            f"{before['compose']['median_ms']:.2f} ms "
            f"({now['compose']['median_ms'] / before['compose']['median_ms']:.2f}×; target "
            f"≤ {TARGET_MS} ms: {met}); recorder CPU a frame "
            f"{now['recorder_cpu_ms_per_frame']:.1f} ms against "
            f"{before['recorder_cpu_ms_per_frame']:.1f} ms "
            f"({now['recorder_cpu_ms_per_frame'] / before['recorder_cpu_ms_per_frame']:.2f}×)."
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    payload = {"command": command, "load": [load0, load1], "results": results}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
