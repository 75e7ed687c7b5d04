"""The web app under load while a session records in the same process (spec §11).

Run: .venv/bin/python bench/bench_web_load.py  (writes bench/results/web-load.json and .md)

`taskerino serve` on loopback over a fresh data folder holding one recorded session (its
video is what the clients ask ranges of). Each phase starts a recording in the server
(a 1280x720 `test:` picture at 15 fps, every frame different, so every frame is encoded),
lets it settle, then runs CLIENTS clients for the phase's time (see tests/web_load.py:
each client holds an event stream on the recording and asks for the session list, a
session and a 64 kB range of the video in turn), then ends the recording. Phases:

- reference: the same recording with no client, RECORD_ONLY seconds;
- paced: clients that wait 0.2 s (0.1-0.3) between answers, like open pages, SECONDS;
- flat out: clients that never wait, SECONDS.

Reported per phase: requests and failures, latencies per endpoint, and the recorder's
frames and drops over the phase (target: no failure, drop rate < 1 %; §11 asks for none),
next to the drops of the same recording made beside the server by `taskerino record` in a
process of its own (the machine is shared: what others take from it shows there too).
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' load client

from tests.cli_helpers import TASKERINO
from tests.web_helpers import Served
from tests.web_load import Targets, run_load

RESULTS = Path(__file__).resolve().parent / "results"
CLIENTS = 50
SECONDS = 60.0
RECORD_ONLY = 20.0
RECORDING = {
    "screenshots": False,
    "video": True,
    "sources": ["test:load"],
    "size": "1280x720",
    "fps": 15,
}


def beside(served: Served, seconds: float) -> subprocess.Popen[str]:
    """The same recording by `taskerino record` in a process of its own, serving no one:
    what the shared machine alone costs a recorder over the phase."""
    options = ["--no-screenshots", "--video", "--source", "test:control"]
    options += ["--size", str(RECORDING["size"]), "--fps", str(RECORDING["fps"])]
    options += ["--duration", str(seconds + 2), "--json"]
    return subprocess.Popen(
        [*TASKERINO, "--home", str(served.home), "record", "--name", "Beside", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def phase(served: Served, targets: Targets, name: str, seconds: float, think: float | None) -> Any:
    live = served.api("POST", "/api/sessions", {"name": f"Recorded: {name}", **RECORDING})["id"]
    control = beside(served, seconds)
    time.sleep(1.5)  # the recorders are up to speed
    before = served.api("GET", f"/api/sessions/{live}/stats")
    started = time.monotonic()
    cpu = os.times()
    summary: dict[str, Any] = {}
    if think is None:
        time.sleep(seconds)
    else:
        load = run_load(
            served.base,
            served.token,
            Targets(live, targets.session, targets.video, targets.video_size),
            seconds=seconds,
            clients=CLIENTS,
            think=think,
        )
        summary = load.summary()
    took = time.monotonic() - started
    used = os.times()
    after = served.api("GET", f"/api/sessions/{live}/stats")
    served.api("POST", f"/api/sessions/{live}/end")
    out, err = control.communicate(timeout=120)
    if control.returncode != 0:
        raise SystemExit(f"the recorder beside the server failed: {err}")
    alone = served.api("GET", f"/api/sessions/{json.loads(out)['id']}/stats")
    dropped = after["frames_dropped"] - before["frames_dropped"]
    frames = dropped + after["frames_processed"] - before["frames_processed"]
    return {
        "phase": name,
        "seconds": round(took, 1),
        "think_s": think,
        "frames": int(frames),
        "frames_dropped": int(dropped),
        "drop_rate": round(dropped / frames, 5) if frames else None,
        "fps": round(frames / took, 2),
        "encode_lag_ms": round(after["encode_lag_ms"], 1),
        "beside": {
            "frames": int(alone["frames_processed"] + alone["frames_dropped"]),
            "frames_dropped": int(alone["frames_dropped"]),
            "drop_rate": round(alone["drop_rate"], 5),
        },
        "load_client_cpu_s": round(used.user + used.system - cpu.user - cpu.system, 1),
        **summary,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Web app under load while recording (spec §11)",
        "",
        f"`python bench/bench_web_load.py` — {report['cpus']} CPUs, Python {report['python']},"
        f" load average before {report['load_average_before'][0]:.1f}"
        f" (the machine is shared), {CLIENTS} clients on loopback",
        "",
        "| phase | s | requests/s | failures | p95 list / session / media ms"
        " | frames | dropped | drop rate | beside: dropped (rate) | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report["phases"]:
        ends = p.get("endpoints", {})
        p95 = " / ".join(str(ends[e]["p95_ms"]) for e in ("list", "session", "media") if e in ends)
        rate = f"{100 * p['drop_rate']:.2f} %" if p["drop_rate"] is not None else "–"
        met = p["drop_rate"] is not None and p["drop_rate"] < 0.01 and not p.get("failures")
        lines.append(
            f"| {p['phase']} | {p['seconds']} | {p.get('requests_per_second', 0)} |"
            f" {p.get('failures', 0)} | {p95 or '–'} | {p['frames']} | {p['frames_dropped']} |"
            f" {rate} | {p['beside']['frames_dropped']} ({100 * p['beside']['drop_rate']:.2f} %)"
            f" | {'met' if met else 'missed'} |"
        )
    lines += [
        "",
        "Target: no failed answer and a drop rate under 1 % (§11 asks for no dropped frame).",
        "Each phase is its own recording of a 1280x720 picture that changes every frame,",
        "at 15 fps; the clients run in the benchmark's process, on the same 2 cores.",
        '"Beside" is the same recording made at the same time by `taskerino record` in a',
        "process of its own that serves no one: what the shared machine alone costs.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--name", default="web-load")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="taskerino-load-") as folder:
        served = Served(Path(folder), "--port", "0")
        try:
            first = {"name": "Played back", "duration": 8, **RECORDING, "sources": ["test:blue"]}
            recorded = served.api("POST", "/api/sessions", first)["id"]
            done = served.wait_completed(recorded)
            video = done["attachments"][done["video"]["full_video_attachment_id"]]
            targets = Targets("", recorded, video["id"], video["size"])
            phases = [
                phase(served, targets, "reference (no client)", RECORD_ONLY, None),
                phase(served, targets, "paced (0.2 s between answers)", args.seconds, 0.2),
                phase(served, targets, "flat out (no pause)", args.seconds, 0.0),
            ]
        finally:
            status, _, err = served.stop()
        if status != 0:
            raise SystemExit(f"serve ended with {status}: {err}")
    report = {
        "benchmark": "web app under load while recording (spec §11)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "clients": CLIENTS,
        "recording": RECORDING,
        "phases": phases,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
