"""Four 1920x1080 sources composed into a 1920x1080 grid (spec §10: ≤ 2 ms a frame).

Run: .venv/bin/python bench/bench_compositor.py [--rounds 3] [--seconds 10] [--reps 300]

The compositor before per-cell reuse (bench/compositor_before.py, kept as it was) runs
beside the current one (`taskerino.media.Compositor`), alternating within one run, on
three workloads:

- all change: every source gives a whole new frame on every tick (the hard case; it is
  what bench_video.py part b records);
- all change in a part: every source changes a 640x360 part on every tick and says where
  (a video playing in a window on each of four displays; an X11 display source knows the
  part from the server's DAMAGE reports);
- all change, typing: every source changes a 48x24 part (a character typed on each);
- one changes / two change: a desktop where the other sources are still and say so, as
  the X11 display sources do, so the capture loop hands their last frame again (the same
  object); those that move change as a whole.

1. Alone: `compose` in a loop, `--reps` calls per variant (random pictures; the changing
   sources cycle through 8 distinct arrays each, so each call gets new objects, and with a
   part, consecutive arrays differ only there); the current compositor with its outputs
   kept by the caller, and given back after each call, as the recorder does. Each call
   starts with another variant (the one after another finds the same sources cached).
2. In the pipeline: a recording of four `test:` sources at 1920x1080 into a 1920x1080 grid
   at 30 fps (capture, compose and encode threads, as bench_video.py part b), with
   `compose` timed inside it. Rounds of `--seconds` alternate the variants: before, now,
   and (without --no-threads) each with OpenCV limited to one thread
   (`cv2.setNumThreads(1)`, process-wide). The
   recorder gives each picture back to the compositor once it is encoded. `test:` sources
   give whole 1920x1080 frames, so the compositor halves them; real X displays are halved
   as they are grabbed instead (`Source.show_at`): bench_compose_displays.py times that.
3. The 2x downscale by kernel: INTER_AREA (what is composed), INTER_LINEAR (the same
   bytes at exactly 0.5, checked), INTER_AREA into a contiguous cell plus a copy,
   pyrDown (a Gaussian, not the same picture) and FFmpeg's swscale (area, through PyAV),
   with default threads and with one (OpenCV's setting; swscale runs on one).
4. Where the downscale's time goes, on one thread: the four downscales against only
   reading the same bytes, with the sources out of the cache and in it.

Writes bench/results/compose-pipeline.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

import compositor_before
import taskerino.capture.synthetic as synthetic
import taskerino.recording.video as video_mod
from taskerino.capture.synthetic import TestPatternSource
from taskerino.frame import NO_CHANGE, Box, Frame
from taskerino.media import Compositor
from taskerino.models import RecordingStats, SessionConfig
from taskerino.sessions import StartRequest, Taskerino

RESULTS = Path(__file__).parent / "results"
WIDTH, HEIGHT, FPS = 1920, 1080, 30
TARGET_MS = 2.0
# Sources that move, and the part of each that changes (None: all of it).
WORKLOADS: dict[str, tuple[int, tuple[int, int] | None]] = {
    "all change": (4, None),
    "all change in a part": (4, (640, 360)),
    "all change, typing": (4, (48, 24)),
    "two change": (2, None),
    "one changes": (1, None),
}
PART_AT = (700, 400)  # where a moving part sits in its source
COLOURS = ["red", "green", "blue", "yellow"]


class Before(compositor_before.Compositor):
    """The compositor before reuse; it had no `release` and knew nothing of boxes."""

    changed_box: Box | None = None  # its pictures may differ anywhere

    def release(self, output: Frame) -> None:
        pass

    def compose(self, frames: Any, boxes: Any = None) -> Frame:
        return super().compose(frames)


def part_box(part: tuple[int, int]) -> Box:
    return (*PART_AT, *part)


def with_part(base: Frame, tile: Frame) -> Frame:
    frame = base.copy()
    x, y = PART_AT
    frame[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return frame


CLASSES: dict[str, Any] = {"before": Before, "now": Compositor}


def summary(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {
        "n": len(ms),
        "mean_ms": float(a.mean()),
        "median_ms": float(np.median(a)),
        "p99_ms": float(np.percentile(a, 99)),
    }


@contextmanager
def cv2_threads(n: int | None) -> Iterator[None]:
    saved = cv2.getNumThreads()
    if n is not None:
        cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(saved)


# --- 1. alone ---------------------------------------------------------------------------------
def alone(reps: int) -> dict[str, dict[str, dict[str, float]]]:
    """`before`; `now` with every output kept by the caller (a fresh one each call, slots
    of unchanged sources copied from the last); `now, given back` with each output given
    back after the call, as the recorder does once it is encoded."""
    rng = np.random.default_rng(0)

    def noise(w: int, h: int) -> Frame:
        return rng.integers(0, 256, (h, w, 4), dtype=np.uint8)

    results: dict[str, dict[str, dict[str, float]]] = {}
    for workload, (moving, part) in WORKLOADS.items():
        if part is None:
            pools = [[noise(WIDTH, HEIGHT) for _ in range(8)] for _ in range(4)]
        else:
            bases = [noise(WIDTH, HEIGHT) for _ in range(4)]
            pools = [[with_part(b, noise(*part)) for _ in range(8)] for b in bases]
        boxes: list[Box | None] = [
            (None if part is None else part_box(part)) if i < moving else NO_CHANGE
            for i in range(4)
        ]
        comps: dict[str, Before | Compositor] = {
            "before": Before("grid", 4, WIDTH, HEIGHT),
            "now, kept": Compositor("grid", 4, WIDTH, HEIGHT),
            "now, given back": Compositor("grid", 4, WIDTH, HEIGHT),
        }
        times: dict[str, list[float]] = {name: [] for name in comps}
        for call in range(reps + 10):
            frames = [pools[i][call % 8 if i < moving else 0] for i in range(4)]
            # Alternate call by call, each call starting with another variant: the variant
            # after another finds the same sources in the cache.
            names = list(comps)
            for name in names[call % len(names) :] + names[: call % len(names)]:
                comp = comps[name]
                started = time.perf_counter()
                out = comp.compose(frames, boxes if call else None)
                if call >= 10:  # warm-up: allocator, OpenCV threads
                    times[name].append((time.perf_counter() - started) * 1000)
                if name == "now, given back":
                    comp.release(out)
        results[workload] = {name: summary(ms) for name, ms in times.items()}
    return results


# --- 3. the 2x downscale alone ----------------------------------------------------------------
def kernels(reps: int) -> dict[str, Any]:
    """The four 1920x1080 → 960x540 cells of one all-changing composition, by kernel,
    alternating call by call, with OpenCV's default threads and with one."""
    rng = np.random.default_rng(1)
    sources = [rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8) for _ in range(4)]
    out = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    cw, ch = WIDTH // 2, HEIGHT // 2
    views = [out[y : y + ch, x : x + cw] for y in (0, ch) for x in (0, cw)]
    cells = [np.empty((ch, cw, 4), np.uint8) for _ in range(4)]

    def into_view(interpolation: int) -> Callable[[], None]:
        def run() -> None:
            for src, view in zip(sources, views, strict=True):
                cv2.resize(src, (cw, ch), dst=view, interpolation=interpolation)

        return run

    def via_cell(scale: Callable[[Frame, Frame], object]) -> Callable[[], None]:
        def run() -> None:
            for src, cell, view in zip(sources, cells, views, strict=True):
                scale(src, cell)
                np.copyto(view, cell)

        return run

    def area(src: Frame, cell: Frame) -> object:
        return cv2.resize(src, (cw, ch), dst=cell, interpolation=cv2.INTER_AREA)

    def pyr(src: Frame, cell: Frame) -> object:
        return cv2.pyrDown(src, dst=cell)

    def swscale() -> None:  # FFmpeg's area scaler, as PyAV offers it (with its copies)
        for src, view in zip(sources, views, strict=True):
            frame = av.VideoFrame.from_ndarray(src, format="bgra")
            small = frame.reformat(cw, ch, "bgra", interpolation="AREA")
            np.copyto(view, small.to_ndarray())

    runs = {
        "INTER_AREA into the output (as composed)": into_view(cv2.INTER_AREA),
        "INTER_LINEAR into the output": into_view(cv2.INTER_LINEAR),
        "INTER_AREA into a contiguous cell + copy": via_cell(area),
        "pyrDown into a contiguous cell + copy": via_cell(pyr),
        "FFmpeg swscale area (PyAV) + copies": swscale,
    }
    timings: dict[str, Any] = {}
    for threads in (None, 1):
        label = "default threads" if threads is None else "1 thread"
        times: dict[str, list[float]] = {name: [] for name in runs}
        with cv2_threads(threads):
            for call in range(reps + 5):
                for name, run in runs.items():
                    started = time.perf_counter()
                    run()
                    if call >= 5:
                        times[name].append((time.perf_counter() - started) * 1000)
        timings[label] = {name: summary(ms) for name, ms in times.items()}
    src = sources[0]
    by_area = cv2.resize(src, (cw, ch), interpolation=cv2.INTER_AREA)
    by_linear = cv2.resize(src, (cw, ch), interpolation=cv2.INTER_LINEAR)
    mean = (src.reshape(ch, 2, cw, 2, 4).astype(np.uint16).sum(axis=(1, 3)) + 2) // 4
    by_pyr = cv2.pyrDown(src)
    out[:] = 0
    returned = cv2.resize(sources[1], (cw, ch), dst=views[1], interpolation=cv2.INTER_AREA)
    in_place = np.shares_memory(returned, out) and np.array_equal(
        out[0:ch, cw:WIDTH], cv2.resize(sources[1], (cw, ch), interpolation=cv2.INTER_AREA)
    )
    return {
        "timings": timings,
        "linear_equals_area": bool(np.array_equal(by_linear, by_area)),
        "area_equals_rounded_2x2_mean": bool(np.array_equal(by_area, mean)),
        "pyrdown_max_abs_difference_from_area": int(
            np.abs(by_pyr.astype(np.int16) - by_area.astype(np.int16)).max()
        ),
        "view_written_in_place": bool(in_place),
    }


# --- 4. where the time of the downscale goes -------------------------------------------------
def floor(reps: int) -> dict[str, dict[str, float]]:
    """One thread (as in the pipeline, where x264 holds the other core): the four 2x
    downscales against only reading the same 33 MB (a SIMD sum), with the sources out of
    the cache (a 64 MB write in between, as capture and x264 leave it) and with one source
    downscaled again and again, just done once untimed (in the cache: the kernel's own
    cost)."""
    rng = np.random.default_rng(2)
    sources = [rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8) for _ in range(4)]
    out = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    cw, ch = WIDTH // 2, HEIGHT // 2
    views = [out[y : y + ch, x : x + cw] for y in (0, ch) for x in (0, cw)]
    evict = np.empty(64 * 1024 * 1024, np.uint8)

    def downscale(srcs: list[Frame]) -> None:
        for src, view in zip(srcs, views, strict=True):
            cv2.resize(src, (cw, ch), dst=view, interpolation=cv2.INTER_AREA)

    def read(srcs: list[Frame]) -> None:
        for src in srcs:
            cv2.sumElems(src)

    runs: dict[str, tuple[Callable[[list[Frame]], None], list[Frame], bool]] = {
        "downscale four sources, out of the cache": (downscale, sources, True),
        "read four sources (sum), out of the cache": (read, sources, True),
        "downscale one source four times, in the cache": (downscale, [sources[0]] * 4, False),
        "read one source four times, in the cache": (read, [sources[0]] * 4, False),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    with cv2_threads(1):
        for call in range(reps + 3):
            for name, (run, srcs, cold) in runs.items():
                if cold:
                    evict[:] = call & 0xFF
                else:
                    run(srcs)  # brings them in
                started = time.perf_counter()
                run(srcs)
                if call >= 3:
                    times[name].append((time.perf_counter() - started) * 1000)
    return {name: summary(ms) for name, ms in times.items()}


# --- 2. in the pipeline -----------------------------------------------------------------------
class StillSource(TestPatternSource):
    """A still test picture that says it is unchanged after its first grab, as an X11
    display source does when the server reports no damage there."""

    __test__ = False

    def __init__(self, name: str, width: int, height: int) -> None:
        super().__init__(name, width, height)
        self._grabbed = False

    def changed(self) -> bool:
        return not self._grabbed

    def grab(self) -> Frame:
        self._grabbed = True
        return super().grab()


class PartSource(TestPatternSource):
    """A test picture where only a part changes on each grab, and which says where (as
    an X11 display source does): eight tiles of noise take turns there."""

    __test__ = False

    def __init__(self, name: str, width: int, height: int, part: tuple[int, int]) -> None:
        super().__init__(name, width, height)
        rng = np.random.default_rng(len(name))
        self._tiles = [rng.integers(0, 256, (part[1], part[0], 4), np.uint8) for _ in range(8)]
        self._part = part
        self._grabs = 0

    @property
    def changed_box(self) -> Box | None:
        return part_box(self._part)

    def grab(self) -> Frame:
        self._grabs += 1
        return with_part(self._background, self._tiles[self._grabs % 8])


def big_source(name: str) -> TestPatternSource:
    if name.startswith(synthetic.STILL_PREFIX):
        return StillSource(name, WIDTH, HEIGHT)
    if name.startswith("part"):  # part-W-H-colour
        _, w, h, _ = name.split("-")
        return PartSource(name, WIDTH, HEIGHT, (int(w), int(h)))
    return TestPatternSource(name, WIDTH, HEIGHT)


def record_round(
    manager: Taskerino,
    workload: tuple[int, tuple[int, int] | None],
    variant: str,
    seconds: float,
    times: list[float],
) -> dict[str, Any]:
    """One recording with `variant`'s compositor; compose times go to `times`."""
    cls = CLASSES[variant.split(",")[0]]
    moving, part = workload
    kind = "" if part is None else f"part-{part[0]}-{part[1]}-"
    sources = [
        f"test:{kind}{c}" if i < moving else f"test:{synthetic.STILL_PREFIX}{c}"
        for i, c in enumerate(COLOURS)
    ]
    config = SessionConfig(
        screenshots=False,
        video=True,
        compositor="grid",
        fps=FPS,
        width=WIDTH,
        height=HEIGHT,
        sources=sources,
    )
    vars(video_mod)["Compositor"] = cls  # the recorder makes its compositor from this name
    threads = 1 if variant.endswith(",1 thread") else None
    load = os.getloadavg()[0]
    with cv2_threads(threads):
        usage0 = os.times()
        session = manager.start(StartRequest(name=f"{variant} {moving}", config=config))
        started = time.monotonic()
        time.sleep(seconds)
        final = manager.stats(session.id)
        wall = time.monotonic() - started
        manager.end(session.id)
        usage1 = os.times()
    return {
        **round_figures(load, wall, final),
        "process_cpu_s": (usage1.user + usage1.system) - (usage0.user + usage0.system),
        "compositions": len(times),
    }


def round_figures(load: float, wall: float, final: RecordingStats) -> dict[str, Any]:
    """What a pipeline round reports of the recording's own stats."""
    return {
        "load_1min_before": load,
        "seconds": wall,
        "frames_captured": final.frames_captured,
        "frames_processed": final.frames_processed,
        "frames_dropped": final.frames_dropped,
        "drop_rate": final.drop_rate,
    }


def timed(original: Callable[..., Frame], sink: dict[str, list[float]]) -> Callable[..., Frame]:
    def compose(self: Any, frames: Any, boxes: Any = None) -> Frame:
        sink["in_draw"] = [0.0]
        started = time.perf_counter()
        try:
            return original(self, frames, boxes)
        finally:
            sink["current"].append((time.perf_counter() - started) * 1000)
            sink["draw"].append(sink["in_draw"][0])

    return compose


def timed_draw(original: Callable[[Frame, Frame], None], sink: dict[str, list[float]]) -> Any:
    """The current compositor's scaling and copying of cells, summed per composition."""

    def draw(frame: Frame, view: Frame) -> None:
        started = time.perf_counter()
        original(frame, view)
        sink["in_draw"][0] += (time.perf_counter() - started) * 1000

    return staticmethod(draw)


def pipeline(rounds: int, seconds: float, variants: list[str]) -> dict[str, Any]:
    sink: dict[str, list[float]] = {"current": [], "draw": [], "in_draw": [0.0]}
    originals = {name: cls.compose for name, cls in CLASSES.items()}
    original_draw = Compositor._draw
    saved_source = vars(synthetic)["TestPatternSource"]
    saved_class = vars(video_mod)["Compositor"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="taskerino-bench-compose-") as scratch:
        manager = Taskerino.open(Path(scratch), recover=False)
        try:
            for name, cls in CLASSES.items():
                cls.compose = timed(originals[name], sink)
            Compositor._draw = timed_draw(original_draw, sink)  # type: ignore[method-assign]
            vars(synthetic)["TestPatternSource"] = big_source
            for workload, spec in WORKLOADS.items():
                per: dict[str, Any] = {
                    v: {"compose_ms": [], "draw_ms": [], "rounds": []} for v in variants
                }
                for r in range(rounds):
                    # Alternate, and start each round with another variant first.
                    order = variants[r % len(variants) :] + variants[: r % len(variants)]
                    for variant in order:
                        print(f"  {workload}, round {r + 1}: {variant}", flush=True)
                        sink["current"], sink["draw"] = [], []
                        info = record_round(manager, spec, variant, seconds, sink["current"])
                        ms = sink["current"][10:]  # the first ones warm up
                        per[variant]["compose_ms"] += ms
                        per[variant]["draw_ms"] += sink["draw"][10:]
                        per[variant]["rounds"].append({**info, **summary(ms)})
                results[workload] = {
                    v: {
                        **summary(p["compose_ms"]),
                        "draw_median_ms": float(np.median(p["draw_ms"])),
                        "drop_rate": float(np.mean([x["drop_rate"] for x in p["rounds"]])),
                        "cpu_s_per_s": float(
                            sum(x["process_cpu_s"] for x in p["rounds"])
                            / sum(x["seconds"] for x in p["rounds"])
                        ),
                        "rounds": p["rounds"],
                    }
                    for v, p in per.items()
                }
        finally:
            manager.close()
            for name, cls in CLASSES.items():
                cls.compose = originals[name]
            Compositor._draw = staticmethod(original_draw)  # type: ignore[method-assign]
            vars(synthetic)["TestPatternSource"] = saved_source
            vars(video_mod)["Compositor"] = saved_class
    return results


# --- report -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300, help="compositions per variant, alone")
    parser.add_argument("--rounds", type=int, default=3, help="pipeline rounds per variant")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a round")
    parser.add_argument("--no-threads", action="store_true", help="skip the 1-thread variants")
    args = parser.parse_args()
    variants = ["before", "now"]
    if not args.no_threads:
        variants += ["before,1 thread", "now,1 thread"]
    load0 = os.getloadavg()
    print(f"1. alone, {args.reps} compositions per variant ...", flush=True)
    alone_results = alone(args.reps)
    print(f"2. in the pipeline, {args.rounds} rounds of {args.seconds:.0f} s ...", flush=True)
    piped = pipeline(args.rounds, args.seconds, variants) if args.rounds else {}
    print("3. the 2x downscale by kernel ...", flush=True)
    kernel = kernels(max(20, args.reps // 3))
    print("4. where the time of the downscale goes ...", flush=True)
    floors = floor(max(20, args.reps // 3))
    load1 = os.getloadavg()
    command = "python bench/bench_compositor.py " + " ".join(sys.argv[1:])
    lines = [
        "# Composition of four 1920x1080 sources into a 1920x1080 grid (spec §10: ≤ 2 ms)",
        "",
        f"`{command}` — {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads by default); "
        f"load average (1, 5, 15 min) {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} "
        f"at the start, {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end.",
        "",
        "`before`: the compositor without reuse (bench/compositor_before.py); `now`: the "
        "current one. Both in the same run, alternating (alone: call by call; in the "
        "pipeline: round by round). The machine is shared: absolute figures follow the load "
        "shown, compare variants within one run.",
        "",
        f"## 1. Alone ({args.reps} compositions each)",
        "",
        "| workload | variant | median ms | p99 ms | mean ms |",
        "|---|---|---|---|---|",
    ]
    for workload, per in alone_results.items():
        for v, s in per.items():
            lines.append(
                f"| {workload} | {v} | {s['median_ms']:.2f} | {s['p99_ms']:.2f} "
                f"| {s['mean_ms']:.2f} |"
            )
    if piped:
        lines += [
            "",
            f"## 2. In the pipeline (4 × 1080p grid at {FPS} fps; {args.rounds} rounds of "
            f"{args.seconds:.0f} s per variant)",
            "",
            "| workload | variant | compositions | median ms | of which scaling and copying "
            "cells, median ms | p99 ms | mean ms | drop rate | process CPU s/s | "
            "load (1 min) per round |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for workload, per in piped.items():
            for v, s in per.items():
                loads = " ".join(f"{x['load_1min_before']:.1f}" for x in s["rounds"])
                draw = "—" if v.startswith("before") else f"{s['draw_median_ms']:.2f}"
                lines.append(
                    f"| {workload} | {v} | {s['n']} | {s['median_ms']:.2f} | {draw} "
                    f"| {s['p99_ms']:.2f} "
                    f"| {s['mean_ms']:.2f} | {100 * s['drop_rate']:.2f} % "
                    f"| {s['cpu_s_per_s']:.2f} | {loads} |"
                )
    lines += [
        "",
        f"## 3. The four 2× downscales of one composition, by kernel "
        f"({max(20, args.reps // 3)} calls each, alternating)",
        "",
        "| kernel | threads | median ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for label, per in kernel["timings"].items():
        for name, k in per.items():
            lines.append(f"| {name} | {label} | {k['median_ms']:.2f} | {k['p99_ms']:.2f} |")
    lines += [
        "",
        f"INTER_LINEAR gives the same bytes as INTER_AREA at exactly 0.5: "
        f"{kernel['linear_equals_area']}; INTER_AREA equals the rounded mean of each 2×2 "
        f"block: {kernel['area_equals_rounded_2x2_mean']}; pyrDown (Gaussian) differs from it "
        f"by up to {kernel['pyrdown_max_abs_difference_from_area']} levels (random picture); "
        f"cv2.resize writes into a strided view of the output in place: "
        f"{kernel['view_written_in_place']}.",
        "",
        f"## 4. Where the time of the downscale goes (1 thread, {max(20, args.reps // 3)} "
        "calls each, alternating)",
        "",
        "| what | median ms | p99 ms |",
        "|---|---|---|",
        *(f"| {name} | {k['median_ms']:.2f} | {k['p99_ms']:.2f} |" for name, k in floors.items()),
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    payload = {
        "benchmark": "compose-pipeline",
        "command": command,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "load_average_start": load0,
        "load_average_end": load1,
        "target_ms": TARGET_MS,
        "alone": alone_results,
        "pipeline": piped,
        "kernels": kernel,
        "floor": floors,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compose-pipeline.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "compose-pipeline.md").write_text(text)


if __name__ == "__main__":
    main()
