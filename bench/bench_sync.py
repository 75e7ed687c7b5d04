"""Lip-sync in the joined MP4: how far the sound is from the picture, against the truth.

Run: .venv/bin/python bench/bench_sync.py [--runs 6] [--name sync]

On a fresh Xvfb and PulseAudio (a null sink kept playing silence, as a sound card renders
continuously), sessions record display:1 and the system audio at 15 and 30 fps. In each,
one process maps a full-screen white window (at a random moment within a frame interval,
so that the capture ticks fall anywhere) and then starts a tone with `pacat`. Truth: the
moment the map returned, and the moment the tone reached the sink's monitor as an
independent `parec` (10 ms fragments) hears it. In the joined MP4: the first white frame's
time and the tone's first loud sample. Error = (sound − picture in the file) − (sound −
picture in truth): negative when the picture is late against the sound. A change is grabbed
at the next capture tick and stamped with the grab's time, so the picture's part lies in
[0, one frame interval): mean about half an interval, never more than one.

Writes bench/results/<name>.json and <name>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from Xlib import display

from taskerino.media.audio import RATE
from taskerino.models import SessionConfig
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualAudio, VirtualDisplay

RESULTS = Path(__file__).parent / "results"
PACAT = ["pacat", "--device=recsink", "--format=s16le", f"--rate={RATE}", "--channels=1",
         "--raw", "--latency-msec=20"]  # fmt: skip


class Ear:
    """When a loud sound reached the monitor (monotonic time), heard with 10 ms fragments."""

    def __init__(self) -> None:
        self.heard: float | None = None
        self.proc = subprocess.Popen(
            ["parec", "--device=recsink.monitor", "--format=s16le", f"--rate={RATE}",
             "--channels=1", "--raw", "--latency-msec=10"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 4096):
            now = time.monotonic()
            samples = np.frombuffer(chunk[: len(chunk) // 2 * 2], np.int16)
            loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 0.3 * 32768)
            if len(loud) and self.heard is None:
                self.heard = now - (len(samples) - loud[0]) / RATE

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def tone(seconds: float = 1.0) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 0.8 * 32767).astype(np.int16).tobytes()


def one_run(library: Taskerino, fps: int) -> dict[str, float]:
    session = library.start(
        StartRequest(
            config=SessionConfig(
                screenshots=False,
                system_audio=True,
                video=True,
                sources=["display:1"],
                fps=fps,
                width=960,
                height=540,
            )
        )
    )
    ear = Ear()
    time.sleep(2.0 + random.random() / fps)
    d = display.Display()
    screen = d.screen()
    window = screen.root.create_window(
        0, 0, 1920, 1080, 0, screen.root_depth, background_pixel=0xFFFFFF
    )
    window.map()
    d.sync()
    mapped = time.monotonic()
    player = subprocess.Popen(PACAT, stdin=subprocess.PIPE)
    player.communicate(tone())
    time.sleep(1.0)
    window.destroy()
    d.close()
    ear.close()
    ended = library.end(session.id)
    assert ear.heard is not None and ended.video is not None
    assert ended.video.full_video_attachment_id is not None
    path = library.attachment_path(library.attachment(ended.video.full_video_attachment_id))
    assert path is not None
    picture = sound = None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.to_ndarray(format="gray").mean() > 200:
                assert frame.pts is not None and frame.time_base is not None
                picture = float(frame.pts * frame.time_base)
                break
        container.seek(0)
        for aframe in container.decode(audio=0):
            samples = aframe.to_ndarray().reshape(-1).astype(np.float32)
            loud = np.flatnonzero(np.abs(samples) > 0.3 * 32768)
            if len(loud):
                assert aframe.pts is not None and aframe.time_base is not None
                sound = float(aframe.pts * aframe.time_base) + loud[0] / aframe.sample_rate
                break
    assert picture is not None and sound is not None
    truth = ear.heard - mapped
    return {"file_ms": (sound - picture) * 1000, "truth_ms": truth * 1000,
            "error_ms": ((sound - picture) - truth) * 1000}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs at each frame rate")
    parser.add_argument("--name", default="sync")
    args = parser.parse_args()
    random.seed(0)
    results: dict[str, Any] = {}
    with VirtualDisplay() as screen, VirtualAudio() as sound, tempfile.TemporaryDirectory() as tmp:
        os.environ["DISPLAY"] = screen.name
        os.environ.update(sound.env)
        keep = subprocess.Popen([*PACAT, "/dev/zero"])  # the sink renders all along
        time.sleep(1.0)
        (Path(tmp) / "home").mkdir()
        library = Taskerino.open(Path(tmp) / "home")
        try:
            for fps in (15, 30):
                runs = [one_run(library, fps) for _ in range(args.runs)]
                errors = [r["error_ms"] for r in runs]
                results[str(fps)] = {
                    "runs": runs,
                    "mean_error_ms": statistics.mean(errors),
                    "min_error_ms": min(errors),
                    "max_error_ms": max(errors),
                    "frame_interval_ms": 1000 / fps,
                }
                print(fps, [round(e) for e in errors], flush=True)
        finally:
            library.close()
            keep.terminate()
            keep.wait()
    load = os.getloadavg()
    payload = {
        "benchmark": "lip-sync",
        "command": "python bench/bench_sync.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": load,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Lip-sync in the joined MP4",
        "",
        f"`{payload['command']}` — {payload['cpus']} CPUs, Python {payload['python']}, "
        f"load average after {load[0]:.2f}",
        "",
        "Error = (sound − picture in the file) − (sound − picture in truth); negative: the "
        "picture is late against the sound. A picture change is grabbed at the next tick, so "
        "its share lies in [0, one interval).",
        "",
        "| fps | runs | error per run (ms) | mean | range | one frame interval | within |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate, r in results.items():
        per_run = ", ".join(f"{x['error_ms']:+.0f}" for x in r["runs"])
        within = -r["frame_interval_ms"] <= r["min_error_ms"] and r["max_error_ms"] <= 10
        lines.append(
            f"| {rate} | {len(r['runs'])} | {per_run} | {r['mean_error_ms']:+.0f} ms | "
            f"{r['min_error_ms']:+.0f} to {r['max_error_ms']:+.0f} ms | "
            f"{r['frame_interval_ms']:.0f} ms | {'yes' if within else 'NO'} |"
        )
    lines += [
        "",
        "BT.1359 puts what viewers notice at 45 ms audio-leading (125 ms lagging).",
        "",
    ]
    text = "\n".join(lines)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
