"""Resident memory of a long recording with video and audio (spec §10: growth < 1 MB/hour).

Run: .venv/bin/python bench/bench_memory.py [--seconds 3600] [--name memory-60min]

On a fresh Xvfb and PulseAudio, the CLI records display:1 (1920x1080, 15 fps) and the
system audio (a null sink kept playing, with a tone every few seconds) while the scripted
workload of bench/workload.py loops on the screen: three terminals that scroll, get typed
into, swap places and sit still in turn, a new loop (its windows made anew) every minute.
The recorder's resident memory (VmRSS from /proc), its CPU seconds and the load average
are sampled every 10 s. The warm-up is fixed at 360 s: the first chunk, x264's buffers
and the frame pools fill, and the first chunk closes at 300 s, when the next chunk's
encoder takes its own buffers. (It was 300 s until a one-hour run showed that step
landing just after it, inside the fitted window; the slope after 300 s is still printed
beside.) Growth per hour is the least-squares slope of the samples after the warm-up,
given with its 95 % interval; the low points (10th percentile) of each 10 minutes show
the floor under the peaks that whole-screen changes bring.
Frames and drops come from the recording's own stats, CPU from the kernel (whole life,
and over the sampled window). The plot shows the curve, the warm-up and the fitted line.

Writes bench/results/<name>.json, <name>.md and <name>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
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


def record(seconds: float, folder: Path) -> dict[str, Any]:
    home = folder / "home"
    home.mkdir(parents=True)
    with VirtualDisplay() as display, VirtualAudio() as sound:
        env = {**os.environ, **sound.env, "DISPLAY": display.name}
        os.environ.update(sound.env)  # for the tone player
        keep = subprocess.Popen(
            ["pacat", "--device=recsink", "--format=s16le", f"--rate={RATE}",
             "--channels=1", "--raw", "--latency-msec=20", "/dev/zero"]
        )  # fmt: skip
        cmd = [
            *taskerino_command(""), "--home", str(home), "record", "--no-screenshots",
            "--video", "--source", "display:1", "--fps", str(FPS),
            "--size", f"{WIDTH}x{HEIGHT}", "--system-audio",
            "--duration", str(seconds + 600), "--json",
        ]  # fmt: skip
        out = (folder / "taskerino.json").open("wb")
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
        while not list(home.glob("staging/*/video/chunk-00000.mp4")):
            if proc.poll() is not None:
                raise RuntimeError("taskerino record failed")
            time.sleep(0.05)
        started = time.monotonic()
        samples: list[tuple[float, float, float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                at = time.monotonic() - started
                mib = rss_kib(proc.pid) / 1024
                samples.append((at, mib, cpu_seconds(proc.pid), os.getloadavg()[0]))
                stop.wait(SAMPLE_SECONDS)

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
    }


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
    ax.plot(t, mib, ".-", ms=3, lw=0.8, label="resident memory (sampled every 10 s)")
    line = result["growth_mib_per_hour"] * t[warm] / 60 + result["fit_intercept_mib"]
    label = (
        f"fit after warm-up: {result['growth_mib_per_hour']:+.2f} "
        f"± {result['growth_ci95_mib_per_hour']:.2f} MiB/hour"
    )
    ax.plot(t[warm], line, "--", label=label)
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
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="taskerino-bench-memory-") as scratch:
        result = record(args.seconds, Path(scratch))
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
            f"| RSS growth after the warm-up (fitted line) | {growth:+.2f} MB/hour "
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
        ]
    )
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
