"""Resident memory of a long recording with video and audio (spec §10: growth < 1 MB/hour).

Run: .venv/bin/python bench/bench_memory.py [--seconds 3600] [--name memory-1h]

On a fresh Xvfb and PulseAudio, the CLI records display:1 (1920x1080, 15 fps) and the
system audio (a null sink kept playing, with a tone every few seconds) while the scripted
workload of bench/workload.py loops on the screen. The recorder's resident memory (VmRSS
from /proc) is sampled every 10 s; growth per hour is the least-squares slope after a
warm-up of 120 s (x264's and the queues' buffers fill in the first minute). The plot shows
the curve and the fitted line.

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

from bench_video import FPS, HEIGHT, WIDTH, rss_kib, taskerino_command, wait_child
from taskerino.media.audio import RATE
from taskerino.virtual import VirtualAudio, VirtualDisplay
from workload import Workload

RESULTS = Path(__file__).parent / "results"
SAMPLE_SECONDS = 10.0
WARM_UP = 120.0
TARGET_MIB_PER_HOUR = 1.0


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
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while not list(home.glob("staging/*/video/chunk-00000.mp4")):
            if proc.poll() is not None:
                raise RuntimeError("taskerino record failed")
            time.sleep(0.05)
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - started, rss_kib(proc.pid) / 1024))
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
        wait_child(proc, 300)
        keep.terminate()
        keep.wait()
    t = np.array([s[0] for s in samples])
    mib = np.array([s[1] for s in samples])
    warm = t >= WARM_UP
    slope = float(np.polyfit(t[warm], mib[warm], 1)[0]) * 3600 if warm.sum() >= 3 else 0.0
    return {
        "seconds": seconds,
        "workload_loops": loop,
        "exit_status": proc.returncode,
        "rss_first_mib": float(mib[0]),
        "rss_after_warm_up_mib": float(mib[warm][0]) if warm.any() else 0.0,
        "rss_last_mib": float(mib[-1]),
        "rss_max_mib": float(mib.max()),
        "growth_mib_per_hour": slope,
        "samples": [{"t": float(a), "rss_mib": float(b)} for a, b in zip(t, mib, strict=True)],
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([s["t"] for s in result["samples"]]) / 60
    mib = np.array([s["rss_mib"] for s in result["samples"]])
    warm = t >= WARM_UP / 60
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, mib, ".-", label="resident memory (sampled every 10 s)")
    if warm.sum() >= 3:
        fit = np.polyfit(t[warm], mib[warm], 1)
        label = f"fit after warm-up: {result['growth_mib_per_hour']:+.1f} MiB/hour"
        ax.plot(t[warm], np.polyval(fit, t[warm]), "--", label=label)
    ax.axvline(WARM_UP / 60, color="grey", lw=0.8)
    ax.set_xlabel("minutes recording (1080p video at 15 fps + system audio)")
    ax.set_ylabel("MiB")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--name", default="memory-1h")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskerino-bench-memory-") as scratch:
        result = record(args.seconds, Path(scratch))
    load = os.getloadavg()
    payload = {
        "benchmark": "memory over a long recording",
        "command": "python bench/bench_memory.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": load,
        "target_mib_per_hour": TARGET_MIB_PER_HOUR,
        "results": result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(result, RESULTS / f"{args.name}.png")
    growth = result["growth_mib_per_hour"]
    text = "\n".join(
        [
            "# Memory over a long recording (spec §10)",
            "",
            f"`{payload['command']}` — {payload['cpus']} CPUs, Python {payload['python']}, "
            f"load average after {load[0]:.2f}",
            "",
            "| what | measured | target | verdict |",
            "|---|---|---|---|",
            f"| RSS growth after {WARM_UP:.0f} s warm-up, {result['seconds'] / 60:.0f} min of "
            f"1080p video at 15 fps + system audio | {growth:+.1f} MiB/hour "
            f"({result['rss_after_warm_up_mib']:.1f} → {result['rss_last_mib']:.1f} MiB, "
            f"max {result['rss_max_mib']:.1f}) | < {TARGET_MIB_PER_HOUR:.0f} MB/hour | "
            f"{'met' if growth < TARGET_MIB_PER_HOUR else 'not met'} |",
            "",
            f"![resident memory over the recording]({args.name}.png)",
            "",
        ]
    )
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
