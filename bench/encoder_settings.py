"""Encoder settings replayed on recorded workloads: bytes, encode CPU and word recall.

Run: .venv/bin/python bench/encoder_settings.py DIR [--kinds pages,typing,...]
     [--name encoder-settings] SETTING [SETTING ...]

DIR is what `bench/bench_workloads.py --keep DIR --lossless` left: per workload a lossless
capture of the screen at 15 fps (`ffmpeg -f x11grab ... -c:v libx264rgb -qp 0`) and its
checkpoints (raw screenshot and the words on screen). Each SETTING replays every capture
through `ChunkedEncoder` the way the recorder feeds it: frames identical to the one before
are skipped and `keepalive` is called instead (so the repeats that push a change to disk
are encoded as in a live recording), at the capture's own timestamps. The same input for
every setting, so bytes and recall differences are the settings' alone, and no second
recorder contends for the CPU. Per setting and workload: bytes, frames encoded and
repeated, the encoder's CPU seconds (`encode`/`keepalive` calls: colour conversion and
x264; noisy on a loaded machine), and Tesseract word recall on the decoded frame shown at
each checkpoint against that on the raw screenshot.

SETTING is comma-separated `crf=N`, `preset=NAME`, `tune=NAME|none`, `keyint=SECONDS`,
`x264=K=V;K=V` (as bench/video_variants.py), `opt.NAME=VALUE` (an option of FFmpeg's
libx264 wrapper, e.g. `opt.deblock=-1:-1`), or `default` for the encoder's defaults.
Writes bench/results/NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import av
import cv2
import numpy as np

from bench_video import frames_at, ocr, recall
from taskerino.frame import Frame
from taskerino.media import ChunkedEncoder

RESULTS = Path(__file__).parent / "results"
FPS, WIDTH, HEIGHT = 15, 1920, 1080


def parse(spec: str) -> tuple[dict[str, Any], str | None, dict[str, str]]:
    """ChunkedEncoder keyword arguments, a tune override (None: keep zerolatency) and
    libx264 options of FFmpeg's wrapper (`opt.NAME=VALUE`, e.g. `opt.deblock=-1:-1`)."""
    kwargs: dict[str, Any] = {}
    tune: str | None = None
    options: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        if name == "default":
            continue
        if name == "preset":
            kwargs["preset"] = value
        elif name == "crf":
            kwargs["crf"] = int(value)
        elif name == "keyint":
            kwargs["keyint_seconds"] = float(value)
        elif name == "x264":
            kwargs["x264_params"] = value.replace(";", ":")
        elif name == "tune":
            tune = value
        elif name.startswith("opt."):
            options[name[4:]] = value
        else:
            raise SystemExit(f"unknown setting {item!r}")
    return kwargs, tune, options


def replay(capture: Path, spec: str, folder: Path) -> dict[str, Any]:
    """Encode `capture` as the recorder would with setting `spec`; the stats and the chunk."""
    kwargs, tune, options = parse(spec)
    encoder = ChunkedEncoder(folder, WIDTH, HEIGHT, FPS, chunk_seconds=3600.0, **kwargs)
    if tune == "none":
        encoder.codec_options.pop("tune", None)
    elif tune:
        encoder.codec_options["tune"] = tune
    encoder.codec_options.update(options)
    cpu = 0.0
    last: Frame | None = None
    end = 0.0
    with av.open(str(capture)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time)
            picture = np.asarray(frame.to_ndarray(format="bgra"), np.uint8)
            same = last is not None and np.array_equal(picture, last)
            started = time.process_time()
            if same:
                encoder.keepalive(t)
            elif encoder.follows(t):
                encoder.encode(picture, t)
            cpu += time.process_time() - started
            last = picture
            end = t
    started = time.process_time()
    info = encoder.close(end + 1 / FPS)
    cpu += time.process_time() - started
    assert info is not None
    return {
        "bytes": encoder.bytes_written,
        "frames_encoded": encoder.frames_encoded,
        "frames_repeated": encoder.frames_repeated,
        "encode_cpu_s": cpu,
        "chunk": str(info.path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("settings", nargs="+")
    parser.add_argument("--kinds", default="pages,typing,scroll,video,idle,bursty")
    parser.add_argument("--name", default="encoder-settings")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if (args.folder / k / "lossless").is_dir()]
    scratch = Path(tempfile.mkdtemp(prefix="taskerino-encoder-settings-"))
    raw_cache = args.folder / "raw-ocr.json"
    raw_words: dict[str, list[str]] = (
        json.loads(raw_cache.read_text()) if raw_cache.exists() else {}
    )
    results: dict[str, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    try:
        for kind in kinds:
            run = json.loads((args.folder / kind / "lossless" / "run.json").read_text())
            checkpoints = run["manifest"]["checkpoints"]
            capture = Path(run["file"])
            for c in checkpoints:
                if c["image"] not in raw_words:
                    raw_words[c["image"]] = ocr(Path(c["image"]))
            raw_cache.write_text(json.dumps(raw_words))
            for n, spec in enumerate(args.settings):
                folder = scratch / f"{kind}-{n}"
                got = replay(capture, spec, folder)
                times = [c["wall"] - run["timeline_zero_wall"] for c in checkpoints]
                images = []
                for c, (_asked, _shown, picture) in zip(
                    checkpoints, frames_at(Path(got["chunk"]), times), strict=False
                ):
                    image = folder / f"{c['name']}.png"
                    cv2.imwrite(str(image), picture)
                    images.append((image, c))
                found = list(pool.map(lambda job: ocr(job[0]), images))
                hit = total = raw_hit = 0
                for (_image, c), words in zip(images, found, strict=True):
                    h, t = recall(c["words"], words)
                    rh, _ = recall(c["words"], raw_words[c["image"]])
                    hit, total, raw_hit = hit + h, total + t, raw_hit + rh
                got.pop("chunk")
                got["recall"] = hit / max(1, total)
                got["raw_recall"] = raw_hit / max(1, total)
                got["recall_points"] = 100 * (hit - raw_hit) / max(1, total)
                got["words"] = total
                results.setdefault(spec, {})[kind] = got
                print(
                    f"{kind:7s} {spec:50s} {got['bytes'] / 1e6:7.3f} MB "
                    f"cpu {got['encode_cpu_s']:5.2f} s frames {got['frames_encoded']}"
                    f"+{got['frames_repeated']} recall {100 * got['recall']:.1f} "
                    f"({got['recall_points']:+.1f} pt)",
                    flush=True,
                )
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        pool.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    base = args.settings[0]
    lines = [
        "# Encoder settings replayed on the workloads",
        "",
        f"`python bench/encoder_settings.py DIR {' '.join(args.settings)}` — "
        f"{os.cpu_count()} CPUs (shared, loaded: 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end; CPU is noisy), Python "
        f"{platform.python_version()}",
        "",
        "Each workload's lossless 15 fps capture replayed through ChunkedEncoder as the "
        "recorder feeds it (identical frames skipped, keepalive repeats). Bytes and encode "
        f"CPU relative to the first setting (`{base}`); recall: Tesseract word recall on the "
        "decoded checkpoint frames, points against the raw screenshots.",
        "",
        "| setting | " + " | ".join(kinds) + " | total bytes × | CPU × |",
        "|---|" + "---|" * (len(kinds) + 2),
    ]
    for spec, per in results.items():
        cells = []
        for kind in kinds:
            r, b = per[kind], results[base][kind]
            cells.append(
                f"{r['bytes'] / 1e3:.0f} kB ({r['bytes'] / b['bytes']:.2f}×), "
                f"{r['recall_points']:+.1f} pt"
            )
        total = sum(per[k]["bytes"] for k in kinds) / sum(results[base][k]["bytes"] for k in kinds)
        cpu = sum(per[k]["encode_cpu_s"] for k in kinds) / sum(
            results[base][k]["encode_cpu_s"] for k in kinds
        )
        lines.append(f"| `{spec}` | " + " | ".join(cells) + f" | {total:.2f}× | {cpu:.2f}× |")
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"settings": args.settings, "kinds": kinds, "results": results}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
