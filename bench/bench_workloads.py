"""Bytes, CPU, drops and legibility on every kind of screen, against ffmpeg (issue 11 item 2).

Run: .venv/bin/python bench/bench_workloads.py [--kinds pages,typing,scroll,video,idle,bursty]
     [--seconds 25] [--seed 0] [--variant SPEC] [--name workloads] [--keep DIR --lossless]

For each workload of bench/workloads.py, on its own fresh Xvfb: Taskerino's CLI recording
display:1 (1920x1080, 15 fps, video only; `--variant` applies bench/video_variants.py
patches) and the reference `ffmpeg -f x11grab -framerate 15 -video_size 1920x1080
-i :N+0,0 -c:v libx264 -preset veryfast -pix_fmt yuv420p`, one after the other, each with
a fresh run of the same deterministic workload (bench/bench_video.py's `record_taskerino`,
`record_ffmpeg` and `legibility`: why sequential, how CPU and recall are measured is
written there). Per workload: bytes ratio (the joined file against ffmpeg's), CPU ratio
(the recorder's utime+stime over the workload window, and over its whole life), drop rate,
and Tesseract word recall on the decoded frames against the raw screenshots taken at the
same moments (the workload's checkpoints).

`--lossless` adds a third run per workload, `ffmpeg -c:v libx264rgb -qp 0` (the screen as
it was, frame by frame), kept in `--keep DIR` with the checkpoints, for
bench/encoder_settings.py to replay through the encoder with other settings.
Writes bench/results/NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_video import TARGETS, legibility, record_ffmpeg, record_taskerino
from taskerino.virtual import VirtualDisplay
from workloads import KINDS, Video, make_video

RESULTS = Path(__file__).parent / "results"
LOSSLESS = ("-c:v", "libx264rgb", "-preset", "ultrafast", "-qp", "0")


def scrub(value: Any) -> Any:
    """The result without this machine's file paths."""
    if isinstance(value, dict):
        return {
            k: scrub(v)
            for k, v in value.items()
            if k not in ("file", "manifest", "image") and not (isinstance(v, str) and "/" in v)
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def run_kind(
    kind: str, seconds: float, seed: int, folder: Path, variant: str, lossless: bool
) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()
    names = ["taskerino", "ffmpeg"] + (["lossless"] if lossless else [])
    with VirtualDisplay() as display:
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "video":
            Video.video_file = make_video(folder / "video.mp4", seconds + 10)
        for name in names:
            sub = folder / name
            sub.mkdir(parents=True)
            work = KINDS[kind](display.name, seconds, seed, sub / "workload")
            print(f"{kind}: recording with {name} ...", flush=True)
            if name == "taskerino":
                runs[name] = record_taskerino(display, work, sub, variant)
            elif name == "ffmpeg":
                runs[name] = record_ffmpeg(display, work, sub)
            else:
                runs[name] = record_ffmpeg(display, work, sub, LOSSLESS, "lossless.mkv")
                (sub / "run.json").write_text(json.dumps(runs[name], indent=2))
    print(f"{kind}: OCR ...", flush=True)
    both = {k: runs[k] for k in ("taskerino", "ffmpeg")}
    legible = legibility(both, folder) if runs["taskerino"]["manifest"]["checkpoints"] else None
    t, f = runs["taskerino"], runs["ffmpeg"]
    result: dict[str, Any] = {
        "kind": kind,
        "taskerino": scrub(t),
        "ffmpeg": scrub(f),
        "bytes_ratio": t["bytes"] / f["bytes"],
        "cpu_window_ratio": t["cpu_window_s"] / f["cpu_window_s"],
        "cpu_ratio": t["cpu_s"] / f["cpu_s"],
        "drop_rate": t["drop_rate"],
        "max_late_s": max(t["manifest"]["max_late_s"], f["manifest"]["max_late_s"]),
        "checkpoints": len(t["manifest"]["checkpoints"]),
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    if lossless:
        result["lossless"] = {
            "bytes": runs["lossless"]["bytes"],
            "encoded_frames": runs["lossless"]["encoded_frames"],
            "dup_drop": runs["lossless"]["dup_drop"],
        }
    if legible is not None:
        s = legible["summary"]
        result["recall"] = {k: v["recall"] for k, v in s.items()}
        result["words"] = s["taskerino"]["words"]
        result["recall_points_taskerino"] = 100 * (
            s["taskerino"]["recall"] - s["taskerino-raw"]["recall"]
        )
        result["recall_points_ffmpeg"] = 100 * (s["ffmpeg"]["recall"] - s["ffmpeg-raw"]["recall"])
        result["legibility"] = scrub(legible)
    return result


def ok(flag: bool) -> str:
    return "met" if flag else "**MISSED**"


def report(results: dict[str, Any], command: str) -> list[str]:
    loads = [r["load_before"][0] for r in results.values()] + [
        r["load_after"][0] for r in results.values()
    ]
    lines = [
        "# Every kind of screen against ffmpeg (spec §10, issue 11 item 2)",
        "",
        f"`{command}` — {os.cpu_count()} CPUs (shared and loaded: CPU figures are noisy; "
        f"1-minute load average {min(loads):.1f}-{max(loads):.1f} during the runs), "
        f"Python {platform.python_version()}",
        "",
        "Each workload runs twice on its own fresh Xvfb, once under each recorder, one after "
        "the other (bench/bench_workloads.py, bench/workloads.py). Ratios are Taskerino / "
        "ffmpeg (`-f x11grab -framerate 15 -video_size 1920x1080 -c:v libx264 -preset "
        "veryfast -pix_fmt yuv420p`). CPU: the recorder's over the workload window (whole "
        "life in brackets). Recall: Tesseract word recall on the decoded frames minus that "
        "on the raw screenshots of the same moments (ffmpeg's in brackets). Targets: "
        "bytes ≤ 0.5×, CPU ≤ 0.5×, drops < 1 %, recall within 2 points.",
        "",
        "| workload | bytes T / F | bytes × | CPU s T / F | CPU × (whole) | drops | "
        "frames T / F | recall raw → decoded | Δ pt (ffmpeg) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        t, f = r["taskerino"], r["ffmpeg"]
        if "recall" in r:
            rec = (
                f"{100 * r['recall']['taskerino-raw']:.1f} → {100 * r['recall']['taskerino']:.1f}"
                f" % ({r['words']} words)"
            )
            delta = f"{r['recall_points_taskerino']:+.1f} ({r['recall_points_ffmpeg']:+.1f}) " + ok(
                r["recall_points_taskerino"] >= -TARGETS["recall_points"]
            )
        else:
            rec, delta = "-", "-"
        lines.append(
            f"| {kind} | {t['bytes'] / 1e6:.2f} / {f['bytes'] / 1e6:.2f} MB | "
            f"{r['bytes_ratio']:.2f}× {ok(r['bytes_ratio'] <= TARGETS['bytes_ratio'])} | "
            f"{t['cpu_window_s']:.1f} / {f['cpu_window_s']:.1f} | "
            f"{r['cpu_window_ratio']:.2f}× ({r['cpu_ratio']:.2f}×) "
            f"{ok(r['cpu_window_ratio'] <= TARGETS['cpu_ratio'])} | "
            f"{100 * r['drop_rate']:.2f} % {ok(r['drop_rate'] < TARGETS['drop_rate'])} | "
            f"{t['encoded_frames']} / {f['encoded_frames']} | {rec} | {delta} |"
        )
    return lines


def plot(results: dict[str, Any], before: dict[str, Any] | None, path: Path) -> None:
    """Bytes and CPU ratios per workload (and the former defaults' bytes), targets drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results)
    x = np.arange(len(kinds))
    fig, ax = plt.subplots(figsize=(9, 4))
    if before:
        ax.bar(
            x - 0.3,
            [before.get(k, {}).get("bytes_ratio", 0) for k in kinds],
            0.28,
            label="bytes, former defaults (CRF 28)",
            color="#bbbbbb",
        )
    ax.bar(x, [results[k]["bytes_ratio"] for k in kinds], 0.28, label="bytes", color="#4c72b0")
    ax.bar(
        x + 0.3,
        [results[k]["cpu_window_ratio"] for k in kinds],
        0.28,
        label="CPU (workload window)",
        color="#dd8452",
    )
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="target ≤ 0.5×")
    ax.set_xticks(x, kinds)
    ax.set_ylabel("Taskerino / ffmpeg")
    ax.set_title("1920x1080 at 15 fps: Taskerino against ffmpeg x11grab + libx264 veryfast")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="pages,typing,scroll,video,idle,bursty")
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", default="", help="bench/video_variants.py patches")
    parser.add_argument("--name", default="workloads", help="results file name")
    parser.add_argument("--keep", type=Path, default=None, help="keep recordings here")
    parser.add_argument("--lossless", action="store_true", help="also a lossless capture")
    parser.add_argument(
        "--plot", action="store_true", help="only redraw NAME.png from NAME.json (and -before)"
    )
    args = parser.parse_args()
    if args.plot:
        saved = json.loads((RESULTS / f"{args.name}.json").read_text())["results"]
        earlier = RESULTS / f"{args.name}-before.json"
        before = json.loads(earlier.read_text())["results"] if earlier.exists() else None
        plot(saved, before, RESULTS / f"{args.name}.png")
        return
    kinds = [k for k in args.kinds.split(",") if k]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"unknown workload {kind!r}; known: {', '.join(KINDS)}")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="taskerino-bench-workloads-"))
    results: dict[str, Any] = {}
    started = time.monotonic()
    try:
        for kind in kinds:
            results[kind] = run_kind(
                kind, args.seconds, args.seed, scratch / kind, args.variant, args.lossless
            )
            r = results[kind]
            print(
                f"{kind}: bytes {r['bytes_ratio']:.2f}x cpu {r['cpu_window_ratio']:.2f}x "
                f"drops {100 * r['drop_rate']:.2f} % "
                f"recall {r.get('recall_points_taskerino', float('nan')):+.1f} pt",
                flush=True,
            )
            write(args, results, time.monotonic() - started)
    finally:
        if args.keep is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch)
    print("\n".join(write(args, results, time.monotonic() - started)))


def write(args: argparse.Namespace, results: dict[str, Any], wall: float) -> list[str]:
    """Write the results so far (after each workload: a failure later keeps them)."""
    command = "python bench/bench_workloads.py " + " ".join(
        a for a in sys.argv[1:] if "/" not in a and a != "--keep"
    )
    lines = report(results, command)
    payload = {
        "benchmark": "workloads",
        "command": command,
        "variant": args.variant or None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "wall_s": wall,
        "targets": TARGETS,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
