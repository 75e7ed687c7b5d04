"""A recorder's upload throughput to S3 against the recording's own bitrate (issue: team
profile, spec §9).

Run: .venv/bin/python bench/bench_s3_upload.py  (writes bench/results/s3-upload.json, .md)

The S3 server is moto's server mode on loopback (the stand-in for S3 here: no
S3-compatible server is installable), on the same 2 cores as the recorder, so the figures
are a floor for a real endpoint's, not a ceiling. In one run:

1. the reference: a real recording into S3 — display:1 of Xvfb, 1920x1080 at 15 fps,
   while the scripted desktop workload of `workload.py` (terminals scrolling, typing,
   window switches) runs on it, plus a screenshot every 10 s — gives the bitrate a
   recorder produces;
2. the recorder's own upload path (`Uploads` → `MediaLibrary.ingest` → `S3BlobStore`,
   SQLite rows) takes files of one video chunk's size (5 minutes at that bitrate, random
   bytes so nothing compresses or deduplicates) and screenshot-sized files, submitted at
   once: bytes per second and files per second until everything is stored.

The ratio is upload throughput over recording bitrate: how much faster than real time a
recorder's media goes up, i.e. how long an outage one recorder catches up on per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from taskerino.models import SessionConfig
from taskerino.recording.video import CHUNK_SECONDS
from taskerino.sessions import StartRequest, Taskerino
from taskerino.store import open_store
from taskerino.store.media import MediaLibrary
from taskerino.store.s3 import S3BlobStore
from taskerino.store.uploads import Uploads
from taskerino.virtual import VirtualDisplay
from workload import Workload

RESULTS = Path(__file__).resolve().parent / "results"
RECORD_SECONDS = 60.0
SHOT_INTERVAL = 10.0
CHUNK_FILES = 4
SHOT_FILES = 100
SHOT_BYTES = 150_000  # a 1920x1080 WebP screenshot of a busy screen


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    moto = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("moto_server did not start")


def record(home: Path, url: str, seconds: float) -> dict[str, Any]:
    """Record display:1 of Xvfb into S3 while the scripted desktop workload runs on it:
    video 1920x1080 at 15 fps and a screenshot every 10 s."""
    config = SessionConfig(
        screenshot_interval=SHOT_INTERVAL,
        video=True,
        sources=["display:1"],
        fps=15,
        width=1920,
        height=1080,
    )
    home.mkdir(parents=True, exist_ok=True)
    with VirtualDisplay() as display:
        os.environ["DISPLAY"] = display.name
        work = Workload(display.name, seconds, 0, home / "workload")
        with Taskerino.open(home, media=url) as library:
            sid = library.start(StartRequest(name="bench", config=config)).id
            work.run()  # sets its terminals up, plays its plan, closes them
            stats = library.stats(sid)
            started = time.perf_counter()
            session = library.end(sid)
            ended = time.perf_counter() - started
            assert session.video is not None and session.video.full_video_attachment_id
            video = library.attachment(session.video.full_video_attachment_id)
            shots = sum(
                library.attachment(a).size for a in {s.attachment_id for s in session.screenshots}
            )
    duration = session.total_duration or seconds
    return {
        "seconds": round(duration, 2),
        "video_bytes": video.size,
        "screenshot_bytes": shots,
        "bytes_per_second": round((video.size + shots) / duration),
        "frames_dropped": stats.frames_dropped,
        "end_seconds": round(ended, 2),
    }


def upload(home: Path, bucket: str, sizes: list[int]) -> dict[str, Any]:
    """Files of `sizes` through the recorder's upload queue; time until all are stored."""
    folder = home / "staging"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"file-{i}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    store = open_store(f"sqlite:{home / 'bench.db'}", Path())
    uploads = Uploads(MediaLibrary(store, S3BlobStore(bucket, "bench")))
    started = time.perf_counter()
    for path in paths:
        uploads.submit(path, "file", path.name)
    assert uploads.drain(3600), "uploads did not finish"
    elapsed = time.perf_counter() - started
    uploads.close()
    store.close()
    total = sum(sizes)
    return {
        "files": len(sizes),
        "bytes": total,
        "seconds": round(elapsed, 3),
        "bytes_per_second": round(total / elapsed),
        "files_per_second": round(len(sizes) / elapsed, 1),
        "failed_attempts": uploads.failed_attempts,
    }


def markdown(report: dict[str, Any]) -> str:
    rec, chunks, shots = report["recording"], report["chunks"], report["screenshots"]
    hour = report["hour_video"]
    mb = 1e6
    return "\n".join(
        [
            "# A recorder's upload throughput to S3 against its bitrate (spec §9)",
            "",
            f"`python bench/bench_s3_upload.py` — {report['cpus']} CPUs, Python "
            f"{report['python']}, load average before {report['load_average_before'][0]} "
            "(the machine is shared); S3 is moto's server mode on loopback (the stand-in "
            "for S3), on the same cores",
            "",
            "| what | files | MB | s | MB/s | files/s | × the recording's bitrate |",
            "|---|---|---|---|---|---|---|",
            f"| reference: recording a desktop, 1920x1080 at 15 fps ({rec['seconds']} s) | "
            f"1 video + screenshots | {(rec['video_bytes'] + rec['screenshot_bytes']) / mb:.1f} "
            f"| {rec['seconds']} | "
            f"{rec['bytes_per_second'] / mb:.3f} | – | 1 |",
            f"| 5-minute chunks ({chunks['bytes'] // chunks['files'] / mb:.1f} MB each) | "
            f"{chunks['files']} | {chunks['bytes'] / mb:.1f} | {chunks['seconds']} | "
            f"{chunks['bytes_per_second'] / mb:.1f} | {chunks['files_per_second']} | "
            f"{report['ratio_chunks']:.0f} |",
            f"| screenshots ({SHOT_BYTES // 1000} kB each) | {shots['files']} | "
            f"{shots['bytes'] / mb:.1f} | {shots['seconds']} | "
            f"{shots['bytes_per_second'] / mb:.1f} | {shots['files_per_second']} | "
            f"{report['ratio_screenshots']:.0f} |",
            f"| joined video of a 1-hour session (multipart) | 1 | {hour['bytes'] / mb:.1f} | "
            f"{hour['seconds']} | {hour['bytes_per_second'] / mb:.1f} | – | "
            f"{report['ratio_hour_video']:.0f} |",
            "",
            "Each upload goes the recorder's way: hash, blob intent, `put_file` (one PUT with "
            "its SHA-256 below 16 MiB, else 8 MiB parts, 4 at a time, each with its SHA-256), "
            "then the attachment row in SQLite — one file after another, as one recording's "
            "upload thread does.",
            f"Ending the {rec['seconds']} s recording (its one chunk and the joined video "
            f"uploaded) took {rec['end_seconds']} s; frames dropped while recording: "
            f"{rec['frames_dropped']}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=RECORD_SECONDS)
    parser.add_argument("--name", default="s3-upload")
    args = parser.parse_args()
    load_before = os.getloadavg()
    server, endpoint = start_moto()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        bucket = "bench-media"
        boto3.client("s3").create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory(prefix="taskerino-s3-") as folder:
            recording = record(Path(folder) / "rec", f"s3://{bucket}/rec", args.seconds)
            chunk = max(1 << 20, round(recording["bytes_per_second"] * CHUNK_SECONDS))
            chunks = upload(Path(folder) / "chunks", bucket, [chunk] * CHUNK_FILES)
            shots = upload(Path(folder) / "shots", bucket, [SHOT_BYTES] * SHOT_FILES)
            # What ending a 1-hour session uploads on its way: the joined video.
            hour = upload(
                Path(folder) / "hour", bucket, [round(recording["bytes_per_second"] * 3600)]
            )
    finally:
        server.terminate()
        server.wait()
    report = {
        "benchmark": "a recorder's upload throughput to S3 against its bitrate (spec §9)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "recording": recording,
        "chunks": chunks,
        "screenshots": shots,
        "hour_video": hour,
        "ratio_chunks": chunks["bytes_per_second"] / recording["bytes_per_second"],
        "ratio_screenshots": shots["bytes_per_second"] / recording["bytes_per_second"],
        "ratio_hour_video": hour["bytes_per_second"] / recording["bytes_per_second"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
