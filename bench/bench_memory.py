"""Resident memory of a long recording with video and audio (spec §10: growth < 1 MB/hour).

Run: .venv/bin/python bench/bench_memory.py [--seconds 3600] [--name memory-60min]

On a fresh Xvfb and PulseAudio, the CLI records display:1 (1920x1080, 15 fps) and the
system audio (a null sink kept playing, with a tone every few seconds) while the scripted
workload of bench/workload.py loops on the screen: three terminals that scroll, get typed
into, swap places and sit still in turn, a new loop (its windows made anew) every minute.
The recorder's resident memory (VmRSS from /proc), its CPU seconds and the load average
are read every second. The 10-s samples are every tenth of them; the floor of each 10 s
is the least of its ten. The samples scatter by the whole frames in flight at the moment
(each 8 MB, a mapping of its own that is given back when freed: sd ~3.6 MiB), which hides
a growth of 1 MB/hour in an hour; the floors are what stays.

The warm-up is fixed at 360 s: the first chunk, x264's buffers and the frame pools fill,
and the first chunk closes at 300 s, when the next chunk's encoder takes its own buffers.
(It was 300 s until a one-hour run showed that step landing just after it, inside the
fitted window; the slope after 300 s is still printed beside.) Growth per hour is the
least-squares slope after the warm-up, of the 10-s samples and of the floors, each with
its 95 % interval; the low points (10th percentile) of each 10 minutes are printed too.
Frames and drops come from the recording's own stats, CPU from the kernel (whole life,
and over the sampled window). The plot shows the curve, the warm-up and the fitted lines.

With --preload LIB, the recorder runs with another allocator (e.g. jemalloc), to
compare. With --probe, the recorder runs with bench/arena_probe/sitecustomize.py, which tells the
resident memory of each thread's C heap; the result then gives each one's growth.

Writes bench/results/<name>.json, <name>.md and <name>.png.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench_video import FPS, HEIGHT, WIDTH, cpu_seconds, rss_kib, taskerino_command, wait_child
from taskerino.media.audio import RATE
from taskerino.sessions import Taskerino
from taskerino.virtual import VirtualAudio, VirtualDisplay
from workload import Workload

RESULTS = Path(__file__).parent / "results"
SAMPLE_SECONDS = 10.0
READ_SECONDS = 1.0  # SAMPLE_SECONDS / READ_SECONDS reads make a sample and a floor
PROBE = Path(__file__).parent / "arena_probe"
WARM_UP = 360.0  # the first chunk closes at 300 s, and the next one's encoder starts
EARLIER_WARM_UP = 300.0  # the warm-up of earlier runs, for comparison
TARGET_MB_PER_HOUR = 1.0  # spec §10, in MB (10^6 bytes)
MIB = 1024 * 1024


def tones(stop: threading.Event) -> None:
    """Half a second of tone every 5 s into the null sink, so the audio is not all silence."""
    t = np.arange(RATE // 2) / RATE
    tone = (np.sin(2 * np.pi * 330 * t) * 0.4 * 32767).astype(np.int16).tobytes()
    while not stop.wait(5.0):
        player = subprocess.Popen(
            ["pacat", "--device=recsink", "--format=s16le", f"--rate={RATE}",
             "--channels=1", "--raw"],
            stdin=subprocess.PIPE,
        )  # fmt: skip
        player.communicate(tone)


def record(seconds: float, folder: Path, probe: bool, preload: str | None) -> dict[str, Any]:
    home = folder / "home"
    home.mkdir(parents=True)
    probe_file = folder / "arena-probe.jsonl"
    with VirtualDisplay() as display, VirtualAudio() as sound, ExitStack() as on_the_way_out:
        env = {**os.environ, **sound.env, "DISPLAY": display.name}
        if probe:
            path = os.pathsep.join(p for p in (str(PROBE), env.get("PYTHONPATH", "")) if p)
            env.update(PYTHONPATH=path, TASKERINO_ARENA_PROBE=str(probe_file))
        if preload:
            env["LD_PRELOAD"] = preload  # the recorder's alone
        os.environ.update(sound.env)  # for the tone player
        keep = subprocess.Popen(
            ["pacat", "--device=recsink", "--format=s16le", f"--rate={RATE}",
             "--channels=1", "--raw", "--latency-msec=20", "/dev/zero"]
        )  # fmt: skip
        on_the_way_out.callback(end_child, keep)
        cmd = [
            *taskerino_command(""), "--home", str(home), "record", "--no-screenshots",
            "--video", "--source", "display:1", "--fps", str(FPS),
            "--size", f"{WIDTH}x{HEIGHT}", "--system-audio",
            "--duration", str(seconds + 600), "--json",
        ]  # fmt: skip
        out = (folder / "taskerino.json").open("wb")
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
        # Interrupted (or failed), no recorder is left recording a screen that is gone.
        on_the_way_out.callback(end_child, proc)
        while not list(home.glob("staging/*/video/chunk-00000.mp4")):
            if proc.poll() is not None:
                raise RuntimeError("taskerino record failed")
            time.sleep(0.05)
        started = time.monotonic()
        samples: list[tuple[float, float, float, float]] = []
        reads: list[tuple[float, float]] = []
        stop = threading.Event()
        on_the_way_out.callback(stop.set)

        def sample() -> None:
            per_sample = round(SAMPLE_SECONDS / READ_SECONDS)
            while not stop.is_set():
                at = time.monotonic() - started
                mib = rss_kib(proc.pid) / 1024
                if len(reads) % per_sample == 0:
                    samples.append((at, mib, cpu_seconds(proc.pid), os.getloadavg()[0]))
                reads.append((at, mib))
                # On the clock, not after the work: the reads stay 1 s apart.
                stop.wait(max(0.0, READ_SECONDS * len(reads) - (time.monotonic() - started)))

        threads = [threading.Thread(target=sample), threading.Thread(target=tones, args=(stop,))]
        for thread in threads:
            thread.start()
        loop = 0
        while time.monotonic() - started < seconds:
            left = seconds - (time.monotonic() - started)
            if left < 8:
                time.sleep(left)
                break
            Workload(display.name, min(60.0, left - 2), 100 + loop, folder / f"loop{loop}").run()
            loop += 1
        stop.set()
        for thread in threads:
            thread.join()
        proc.send_signal(signal.SIGINT)
        cpu_total, _ = wait_child(proc, 300)
        out.close()
        keep.terminate()
        keep.wait()
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"taskerino record exited {proc.returncode}: {err[-2000:]}")
        data = json.loads((folder / "taskerino.json").read_text())
        manager = Taskerino.open(home, recover=False)
        try:
            stats = manager.stats(data["id"])
        finally:
            manager.close()
    t = np.array([s[0] for s in samples])
    mib = np.array([s[1] for s in samples])
    cpu = np.array([s[2] for s in samples])
    load = np.array([s[3] for s in samples])
    fit = growth_fit(t, mib)
    earlier = growth_fit(t, mib, EARLIER_WARM_UP)
    floor_t, floor_mib = floors(np.array([r[0] for r in reads]), np.array([r[1] for r in reads]))
    floor_fit = growth_fit(floor_t, floor_mib)
    windows = [
        {
            "from_min": m,
            "low_mib": float(np.percentile(mib[(t >= m * 60) & (t < m * 60 + 600)], 10)),
        }
        for m in range(0, int(seconds // 60) - 9, 10)
    ]
    return {
        "seconds": seconds,
        "warm_up_s": WARM_UP,
        "workload_loops": loop,
        "exit_status": proc.returncode,
        "rss_first_mib": float(mib[0]),
        "rss_after_warm_up_mib": float(mib[t >= WARM_UP][0]),
        "rss_last_mib": float(mib[-1]),
        "rss_max_after_warm_up_mib": float(mib[t >= WARM_UP].max()),
        "rss_min_after_warm_up_mib": float(mib[t >= WARM_UP].min()),
        **fit,
        "floor": {
            **floor_fit,
            "rss_after_warm_up_mib": float(floor_mib[floor_t >= WARM_UP][0]),
            "rss_last_mib": float(floor_mib[-1]),
        },
        "growth_mib_per_hour_after_300s": earlier["growth_mib_per_hour"],
        "growth_ci95_mib_per_hour_after_300s": earlier["growth_ci95_mib_per_hour"],
        "low_points_by_10_min": windows,
        "cpu_s": cpu_total,
        "cpu_window_s": float(cpu[-1] - cpu[0]),
        "cpu_per_second_of_recording": float((cpu[-1] - cpu[0]) / (t[-1] - t[0])),
        "load_average_mean": float(load.mean()),
        "load_average_max": float(load.max()),
        "video_duration_s": data["video"]["duration"],
        "chunks": len(data["video"]["chunks"]),
        "frames_captured": stats.frames_captured,
        "frames_processed": stats.frames_processed,
        "frames_changed": stats.frames_changed,
        "frames_dropped": stats.frames_dropped,
        "drop_rate": stats.drop_rate,
        "samples": [
            {"t": float(a), "rss_mib": float(b), "cpu_s": float(c), "load1": float(d)}
            for a, b, c, d in zip(t, mib, cpu, load, strict=True)
        ],
        "floors": [
            {"t": float(a), "rss_mib": float(b)} for a, b in zip(floor_t, floor_mib, strict=True)
        ],
        "arenas": arena_growth(probe_file, started) if probe else [],
    }


def end_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def floors(t: np.ndarray, mib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least reading of each SAMPLE_SECONDS (timed at the window's first reading)."""
    window = (t // SAMPLE_SECONDS).astype(int)
    starts = np.flatnonzero(np.r_[True, window[1:] != window[:-1]])
    return t[starts], np.minimum.reduceat(mib, starts)


def arena_growth(path: Path, started: float) -> list[dict[str, Any]]:
    """Each C heap's resident memory after the warm-up, and its fitted growth; a heap is
    named by every thread that allocated from it (glibc hands a finished thread's arena
    to the next new one)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    t = np.array([row["t"] - started for row in rows])
    warm = t >= WARM_UP
    users: dict[str, set[str]] = {}
    for row in rows:
        for heap, threads in row["threads"].items():
            users.setdefault(heap, set()).update(threads)
    out = []
    for heap in sorted({heap for row in rows for heap in row["kib"]}):
        kib = np.array([row["kib"].get(heap, 0) for row in rows], float)
        fit = growth_fit(t, kib / 1024)
        name = heap.split(" 0x")[0]  # the address says nothing to a reader
        if heap in users:
            name += ": " + ", ".join(sorted(users[heap]))
        out.append(
            {
                "heap": name,
                "after_warm_up_kib": float(kib[warm][0]),
                "last_kib": float(kib[-1]),
                "growth_mib_per_hour": fit["growth_mib_per_hour"],
                "growth_ci95_mib_per_hour": fit["growth_ci95_mib_per_hour"],
            }
        )
    return out


def growth_fit(t: np.ndarray, mib: np.ndarray, warm_up: float = WARM_UP) -> dict[str, float]:
    """Least-squares line through the samples after the warm-up: slope per hour, its
    95 % interval (normal approximation) and the scatter around the line."""
    warm = t >= warm_up
    if warm.sum() < 3:
        raise RuntimeError("too few samples after the warm-up")
    x, y = t[warm] / 3600, mib[warm]
    (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
    residuals = y - (slope * x + intercept)
    return {
        "growth_mib_per_hour": float(slope),
        "growth_mb_per_hour": float(slope) * MIB / 1e6,
        "growth_ci95_mib_per_hour": float(1.96 * np.sqrt(cov[0][0])),
        "residual_sd_mib": float(residuals.std()),
        "fit_intercept_mib": float(intercept),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s["t"] for s in result["samples"]]) / 60
    mib = np.array([s["rss_mib"] for s in result["samples"]])
    warm = t >= WARM_UP / 60
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, mib, ".-", ms=3, lw=0.6, color="tab:blue", alpha=0.6,
            label="resident memory (sampled every 10 s)")  # fmt: skip
    line = result["growth_mib_per_hour"] * t[warm] / 60 + result["fit_intercept_mib"]
    label = (
        f"its fit after warm-up: {result['growth_mib_per_hour']:+.2f} "
        f"± {result['growth_ci95_mib_per_hour']:.2f} MiB/hour"
    )
    ax.plot(t[warm], line, "--", color="tab:blue", label=label)
    if result.get("floors"):
        floor = result["floor"]
        ft = np.array([s["t"] for s in result["floors"]]) / 60
        fmib = np.array([s["rss_mib"] for s in result["floors"]])
        ax.plot(
            ft,
            fmib,
            "-",
            lw=0.8,
            color="tab:green",
            label="floor: least of each 10 s (read every second)",
        )
        fwarm = ft >= WARM_UP / 60
        line = floor["growth_mib_per_hour"] * ft[fwarm] / 60 + floor["fit_intercept_mib"]
        label = (
            f"its fit after warm-up: {floor['growth_mib_per_hour']:+.2f} "
            f"± {floor['growth_ci95_mib_per_hour']:.2f} MiB/hour"
        )
        ax.plot(ft[fwarm], line, "--", color="darkgreen", label=label)
    ax.axvline(WARM_UP / 60, color="grey", lw=0.8)
    ax.text(WARM_UP / 60, mib.min(), " warm-up", color="grey", va="bottom")
    ax.set_xlabel("minutes recording (1080p video at 15 fps + system audio)")
    ax.set_ylabel("MiB")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--name", default="memory-60min")
    parser.add_argument("--probe", action="store_true", help="each thread's C heap, too")
    parser.add_argument(
        "--preload", metavar="LIB", help="another allocator for the recorder (LD_PRELOAD)"
    )
    args = parser.parse_args()
    if args.preload:
        try:
            ctypes.CDLL(args.preload)  # the loader would only warn, and run without it
        except OSError as e:
            parser.error(f"cannot load {args.preload}: {e} (e.g. apt-get install libjemalloc2)")
    # A timeout's SIGTERM unwinds like ^C: the recorder and the virtual devices are ended.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="taskerino-bench-memory-") as scratch:
        result = record(args.seconds, Path(scratch), args.probe, args.preload)
    load = os.getloadavg()
    payload = {
        "benchmark": "memory over a long recording",
        "command": "python bench/bench_memory.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": load,
        "load_average_before": load_before,
        "target_mb_per_hour": TARGET_MB_PER_HOUR,
        "results": result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(result, RESULTS / f"{args.name}.png")
    r = result
    growth, ci = r["growth_mb_per_hour"], r["growth_ci95_mib_per_hour"] * MIB / 1e6
    met = growth + ci < TARGET_MB_PER_HOUR
    f = r["floor"]
    floor_growth, floor_ci = f["growth_mb_per_hour"], f["growth_ci95_mib_per_hour"] * MIB / 1e6
    floor_met = floor_growth + floor_ci < TARGET_MB_PER_HOUR
    arenas = [
        f"| {a['heap']} | {a['after_warm_up_kib']:.0f} → {a['last_kib']:.0f} | "
        f"{a['growth_mib_per_hour'] * MIB / 1e6:+.2f} "
        f"± {a['growth_ci95_mib_per_hour'] * MIB / 1e6:.2f} |"
        for a in r["arenas"]
    ]
    arena_table = (
        [
            "Each C heap's resident memory (bench/arena_probe, every 10 s inside the recorder):",
            "",
            "| heap (the threads that allocate from it) | KiB after the warm-up → at the end "
            "| growth, MB/hour (95 % interval) |",
            "|---|---|---|",
            *arenas,
            "",
        ]
        if arenas
        else []
    )
    text = "\n".join(
        [
            "# Memory over a long recording (spec §10)",
            "",
            f"`{payload['command']}` — {payload['cpus']} CPUs, Python {payload['python']}; "
            f"load average (1 min) before {load_before[0]:.2f}, during {r['load_average_mean']:.2f}"
            f" on average (max {r['load_average_max']:.2f}), after {load[0]:.2f} "
            "(the load includes other processes on the machine).",
            "",
            f"{r['seconds'] / 60:.0f} min of 1080p video at 15 fps (display:1, the scripted "
            "desktop workload looping) + system audio; resident memory sampled every 10 s; "
            f"warm-up fixed beforehand at {r['warm_up_s']:.0f} s.",
            "",
            "| what | measured | target | verdict |",
            "|---|---|---|---|",
            f"| RSS floor growth after the warm-up (fitted line through the least of each 10 s)"
            f" | {floor_growth:+.2f} MB/hour (95 % interval ± {floor_ci:.2f}); "
            f"{f['rss_after_warm_up_mib']:.1f} → {f['rss_last_mib']:.1f} MiB, scatter (sd) "
            f"{f['residual_sd_mib']:.2f} MiB | < {TARGET_MB_PER_HOUR:.0f} MB/hour | "
            f"{'met' if floor_met else 'not met'} |",
            "| RSS growth after the warm-up (fitted line through the 10-s samples) | "
            f"{growth:+.2f} MB/hour "
            f"(95 % interval ± {ci:.2f}); {r['rss_after_warm_up_mib']:.1f} → "
            f"{r['rss_last_mib']:.1f} MiB, range {r['rss_min_after_warm_up_mib']:.1f}–"
            f"{r['rss_max_after_warm_up_mib']:.1f} MiB, scatter (sd) {r['residual_sd_mib']:.2f} MiB"
            f" | < {TARGET_MB_PER_HOUR:.0f} MB/hour | {'met' if met else 'not met'} |",
            f"| the same, warm-up of earlier runs (300 s) | "
            f"{r['growth_mib_per_hour_after_300s'] * MIB / 1e6:+.2f} MB/hour (95 % interval ± "
            f"{r['growth_ci95_mib_per_hour_after_300s'] * MIB / 1e6:.2f}) | — | — |",
            "| low points (10th percentile) by 10 minutes | "
            + ", ".join(
                f"{w['from_min']}–{w['from_min'] + 10} min: {w['low_mib']:.1f}"
                for w in r["low_points_by_10_min"]
            )
            + " MiB | — | — |",
            f"| recorder CPU | {r['cpu_s']:.0f} s in all, "
            f"{100 * r['cpu_per_second_of_recording']:.1f} % of a core while sampled | — | — |",
            f"| frames | {r['frames_captured']} captured, {r['frames_changed']} encoded, "
            f"{r['frames_dropped']} dropped ({100 * r['drop_rate']:.2f} %); video "
            f"{r['video_duration_s']:.0f} s in {r['chunks']} chunks | drop rate < 1 % | "
            f"{'met' if r['drop_rate'] < 0.01 else 'not met'} |",
            "",
            f"![resident memory over the recording]({args.name}.png)",
            "",
            *arena_table,
        ]
    )
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
