"""A still screen: what recording costs while the person reads (spec §10, change-driven capture).

Run: .venv/bin/python bench/bench_static.py [--seconds 30] [--runs 3]

On a fresh Xvfb, three xterms full of text are opened and left alone (no blinking cursor,
nothing moving). With that screen still, one after the other and `--runs` times each:
- Taskerino's CLI recording display:1 (1920x1080, 15 fps, video only) with change reports
  from the X server (DAMAGE), the default;
- the same with `TASKERINO_CAPTURE=poll`: every tick grabs and compares the screen (what
  Taskerino did before change reports, and what it does where DAMAGE is missing);
- the reference `ffmpeg -f x11grab -framerate 15 ... -c:v libx264 -preset veryfast`;
- Taskerino recording one window (the `notes` xterm, full of text, `window:ID`, scaled
  into the same 1920x1080 picture), with its change reports and with
  `TASKERINO_CAPTURE=poll`.
CPU is the recorder's utime+stime over the still stretch only (read from /proc before and
after), and the X server's over the same stretch beside it (grabbing makes it work too).
Writes bench/results/static.json and static.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_video import record_ffmpeg, record_taskerino
from taskerino.capture.damage import CAPTURE_MODE_ENV
from taskerino.capture.x11 import X11Backend
from taskerino.virtual import VirtualDisplay
from workload import Workload

RESULTS = Path(__file__).parent / "results"


class StillScreen(Workload):
    """The workload's terminals, drawn once; `run` only waits while nothing changes."""

    def run(self) -> dict[str, Any]:
        start_wall = time.time()
        time.sleep(self.seconds)
        return {"start_wall": start_wall, "end_wall": time.time(), "checkpoints": []}

    def fill(self) -> None:
        for i in range(30):
            self._append("log", f"12:{i:02d}:07 worker-{i % 4} billing retry invoice {4400 + i}")
            self._append("notes", f"- note {i}: the deploy console shows rollout {i} of 30")


def measure(
    recorder: str, display: VirtualDisplay, work: StillScreen, folder: Path, window: str
) -> dict[str, Any]:
    folder.mkdir(parents=True)
    if recorder == "ffmpeg":
        run = record_ffmpeg(display, work, folder)
    else:
        old = os.environ.pop(CAPTURE_MODE_ENV, None)
        if recorder.startswith("taskerino-poll"):
            os.environ[CAPTURE_MODE_ENV] = "poll"
        source = window if recorder.endswith(", a window") else "display:1"
        try:
            run = record_taskerino(display, work, folder, source=source)
        finally:
            os.environ.pop(CAPTURE_MODE_ENV, None)
            if old is not None:
                os.environ[CAPTURE_MODE_ENV] = old
    keep = ("cpu_window_s", "xvfb_window_s", "window_s", "bytes", "encoded_frames")
    extra = ("frames_captured", "frames_dropped")
    return {k: run[k] for k in (*keep, *extra) if k in run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    recorders = (
        "taskerino",
        "taskerino-poll",
        "ffmpeg",
        "taskerino, a window",
        "taskerino-poll, a window",
    )
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in recorders}
    with (
        tempfile.TemporaryDirectory(prefix="taskerino-static-") as tmp,
        VirtualDisplay() as display,
    ):
        work = StillScreen(display.name, seconds=args.seconds, out=Path(tmp) / "work")
        work.setup()
        try:
            work.fill()
            time.sleep(2.0)  # the terminals have drawn their text
            backend = X11Backend(display.name)
            try:
                window = next(w.id for w in backend.windows() if w.title == "notes")
            finally:
                backend.close()
            for i in range(args.runs):
                for recorder in recorders:
                    folder = Path(tmp) / f"{recorder.replace(', ', '-')}-{i}"
                    result = measure(recorder, display, work, folder, window)
                    runs[recorder].append(result)
                    print(recorder, i, json.dumps(result), flush=True)
        finally:
            work.teardown()
    summary = {
        r: {
            "cpu_s": statistics.median(x["cpu_window_s"] for x in runs[r]),
            "xvfb_cpu_s": statistics.median(x["xvfb_window_s"] for x in runs[r]),
            "bytes": statistics.median(x["bytes"] for x in runs[r]),
            "encoded_frames": statistics.median(x["encoded_frames"] for x in runs[r]),
        }
        for r in recorders
    }
    ref = summary["ffmpeg"]
    lines = [
        "# A still screen: recording cost while nothing changes",
        "",
        f"`.venv/bin/python bench/bench_static.py --seconds {args.seconds:g} --runs {args.runs}`",
        "",
        "Three xterms full of text on a 1920x1080 monitor of a fresh Xvfb, left alone; "
        f"each recorder records display:1 at 15 fps for {args.seconds:g} s of that stillness "
        "(the last two rows: one of the xterms, `window:ID`, into the same 1920x1080 "
        f"picture), {args.runs} runs each, interleaved; medians. CPU is the recorder's over "
        "the still "
        "stretch; the X server's over the same stretch is beside it. Target (spec §10, "
        "issue 11): recorder CPU ≤ 0.05× ffmpeg's.",
        "",
        "| recorder | CPU s | × ffmpeg | X server CPU s | bytes | encoded frames |",
        "|---|---|---|---|---|---|",
    ]
    for r in recorders:
        s = summary[r]
        lines.append(
            f"| {r} | {s['cpu_s']:.2f} | {s['cpu_s'] / ref['cpu_s']:.3f}× | "
            f"{s['xvfb_cpu_s']:.2f} | {s['bytes']:,.0f} | {s['encoded_frames']:.0f} |"
        )
    lines += [
        "",
        "Each run, in order:",
        "",
        "| recorder | run | CPU s | X server CPU s |",
        "|---|---|---|---|",
    ]
    for r in recorders:
        for i, x in enumerate(runs[r]):
            lines.append(f"| {r} | {i} | {x['cpu_window_s']:.2f} | {x['xvfb_window_s']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "static.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    (RESULTS / "static.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
