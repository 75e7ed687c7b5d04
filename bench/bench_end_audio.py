"""End of a 1-hour session with audio and video, to its playable files (spec §10).

Run: .venv/bin/python bench/bench_end_audio.py [--minutes 60] [--runs 3] [--name end-audio]

Builds an hour of what a recording leaves: the video stand-in of bench_video.py part c
(H.264 chunks of the recorder's length, `CHUNK_SECONDS`, from screen-like pictures, encoded
faster than real time) and
360 ten-second audio segments written by the recorder's own `SegmentWriter` (raw partial,
then FLAC) from speech-like sound (noise shaped into syllables with pauses between
phrases, over a quiet room tone). Then times, one after the other in the same run:

- now: the recorder appends each segment's FLAC frames to `session.m4a` as the segment
  closes (`AudioJoiner.append`, not timed: it happens during the hour, its cost per segment
  is reported); at the end `AudioJoiner.close`, hashing `session.m4a` (what staging it in
  the blob store costs beside a rename), `join_chunks` with that audio (video and audio
  packets copied into the full MP4) and hashing the full MP4;
- before: `join_audio` to `session.flac` (every segment decoded and encoded again),
  hashing it, the same `join_chunks` with it, hashing the full MP4;
- reference: `ffmpeg -f concat ... -c copy` for the audio, then for video and audio
  together (the ffmpeg processes' wall time; ffmpeg hashes nothing).

Each is the median of `--runs`. Writes bench/results/<name>.json and <name>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench_video import encode_minutes
from taskerino.media import join_chunks
from taskerino.media.audio import RATE, AudioJoiner, SegmentInfo, SegmentWriter, join_audio
from taskerino.recording.video import CHUNK_SECONDS
from taskerino.store.media import sha256_file

RESULTS = Path(__file__).parent / "results"
TARGET_S = 2.0
SEGMENT_SECONDS = 10


def speech_like(seconds: int, seed: int) -> np.ndarray:
    """Mono int16 at RATE: syllables of shaped noise (~4 a second) in phrases of a few
    seconds, pauses between them, over room tone at about -60 dBFS."""
    rng = np.random.default_rng(seed)
    n = seconds * RATE
    out = rng.normal(0, 30, n)
    t = 0
    while t < n:
        phrase = int(rng.uniform(1.5, 6) * RATE)
        end = min(n, t + phrase)
        while t < end:
            syllable = int(rng.uniform(0.12, 0.3) * RATE)
            length = min(syllable, end - t)
            envelope = np.sin(np.linspace(0, np.pi, length)) * rng.uniform(2000, 9000)
            noise = np.convolve(rng.normal(0, 1, length), np.ones(12) / 12, "same")
            pitch = np.sin(2 * np.pi * rng.uniform(110, 220) * np.arange(length) / RATE)
            out[t : t + length] += envelope * (0.6 * noise + 0.4 * pitch)
            t += syllable
        t = end + int(rng.uniform(0.3, 2.5) * RATE)
    return np.clip(out, -32768, 32767).astype(np.int16)


def write_segments(folder: Path, minutes: int) -> list[Path]:
    folder.mkdir(parents=True)
    closed: list[SegmentInfo] = []
    writer = SegmentWriter(folder, SEGMENT_SECONDS * RATE, closed.append)
    for minute in range(minutes):
        writer.write(speech_like(60, minute))
    writer.close()
    return [info.path for info in closed]


def build_video(folder: Path, minutes: int) -> list[Path]:
    workers = max(1, min(2, os.cpu_count() or 1))
    per = [minutes // workers + (1 if i < minutes % workers else 0) for i in range(workers)]
    firsts = [sum(per[:i]) for i in range(workers)]
    jobs: list[tuple[Path, int, int, list[Path], float | None]] = [
        (folder / f"enc{i}", firsts[i], per[i], [], None) for i in range(workers)
    ]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(partial(encode_minutes, chunk_seconds=CHUNK_SECONDS), jobs)
    return [Path(c[0]) for part in parts for c in part["chunks"]]


CPU_SECONDS: dict[str, list[float]] = {}  # CPU time of each timed call, by label


def cpu_now() -> float:
    """CPU seconds of this process and its finished children (ffmpeg)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], Any], label: str = "") -> float:
    """Wall seconds of `fn`; its CPU seconds go to CPU_SECONDS[label] (on a busy machine
    the wall time includes waiting for a core, the CPU time does not)."""
    os.sync()  # each contender starts with the same dirty-page state
    t, cpu = time.perf_counter(), cpu_now()
    fn()
    CPU_SECONDS.setdefault(label, []).append(cpu_now() - cpu)
    return time.perf_counter() - t


def finish(joiner: AudioJoiner, out: Path) -> None:
    joiner.close()
    sha256_file(out)


def ffmpeg_concat(listing: Path, inputs: list[Path], out: Path, *extra: str) -> None:
    listing.write_text("".join(f"file '{p}'\n" for p in inputs))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
         *extra, "-c", "copy", "-strict", "-2", str(out)],
        check=True,
    )  # fmt: skip


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        last = None
        for packet in c.demux(stream):
            if packet.pts is not None and packet.size:
                last = packet
        assert last is not None and last.pts is not None
        return float((last.pts + (last.duration or 0)) * last.time_base)


def run(folder: Path, minutes: int, runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    segments = write_segments(folder / "audio", minutes)
    audio_build_s = time.perf_counter() - started
    started = time.perf_counter()
    chunks = build_video(folder / "video", minutes)
    video_build_s = time.perf_counter() - started
    out = folder / "out"
    out.mkdir()
    m4a, flac, full = out / "session.m4a", out / "session.flac", out / "full.mp4"
    ref_audio, ref_full = out / "ref-audio.mp4", out / "ref.mp4"
    names = ("append_now", "audio_now", "full_now", "audio_before", "full_before",
             "video_only", "audio_ref", "full_ref")  # fmt: skip
    samples: dict[str, list[float]] = {k: [] for k in names}
    full_args = ["-i", str(ref_audio), "-map", "0:v", "-map", "1:a", "-movflags", "+faststart"]
    for _ in range(runs):
        joiner = AudioJoiner(m4a)
        t = time.perf_counter()
        for path in segments:  # during the hour, as each segment closes
            joiner.append(path)
        samples["append_now"].append(time.perf_counter() - t)
        samples["audio_now"].append(timed(partial(finish, joiner, m4a), "audio_now"))
        samples["full_now"].append(
            timed(lambda: (join_chunks(chunks, full, m4a), sha256_file(full)), "full_now")
        )
        samples["audio_before"].append(
            timed(lambda: (join_audio(segments, flac), sha256_file(flac)), "audio_before")
        )
        samples["full_before"].append(
            timed(lambda: (join_chunks(chunks, full, flac), sha256_file(full)), "full_before")
        )
        samples["video_only"].append(
            timed(lambda: (join_chunks(chunks, full), sha256_file(full)), "video_only")
        )
        samples["audio_ref"].append(
            timed(lambda: ffmpeg_concat(out / "a.txt", segments, ref_audio), "audio_ref")
        )
        samples["full_ref"].append(
            timed(lambda: ffmpeg_concat(out / "v.txt", chunks, ref_full, *full_args), "full_ref")
        )
    join_chunks(chunks, full, m4a)
    median = {k: statistics.median(v) for k, v in samples.items()}
    expected = len(segments) * SEGMENT_SECONDS
    return {
        "minutes": minutes,
        "runs": runs,
        "segments": len(segments),
        "segment_bytes": sum(p.stat().st_size for p in segments),
        "chunks": len(chunks),
        "chunk_bytes": sum(p.stat().st_size for p in chunks),
        "audio_build_s": audio_build_s,
        "video_build_s": video_build_s,
        "m4a_bytes": m4a.stat().st_size,
        "flac_bytes": flac.stat().st_size,
        "full_bytes": full.stat().st_size,
        "audio_seconds_expected": expected,
        "audio_seconds_in_m4a": audio_seconds(m4a),
        "audio_seconds_in_full": audio_seconds(full),
        "samples_s": samples,
        "median_s": median,
        "cpu_median_s": {k: statistics.median(v) for k, v in CPU_SECONDS.items()},
        "end_now_s": median["audio_now"] + median["full_now"],
        "end_before_s": median["audio_before"] + median["full_before"],
        "end_ref_s": median["audio_ref"] + median["full_ref"],
    }


def markdown(payload: dict[str, Any]) -> str:
    r = payload["results"]
    m = r["median_s"]
    now, before, ref = r["end_now_s"], r["end_before_s"], r["end_ref_s"]
    cpu_median = r.get("cpu_median_s", {})

    def cpu(*labels: str) -> str:
        return f"{sum(cpu_median.get(k, 0.0) for k in labels):.2f}"

    mb = 1024 * 1024
    return "\n".join(
        [
            "# End of a 1-hour session with audio and video",
            "",
            f"`{payload['command']}` — {payload['cpus']} CPUs, Python {payload['python']}, "
            f"median of {r['runs']} runs, load average after "
            f"{payload['load_average_after'][0]:.2f}",
            "",
            f"Input: {r['chunks']} video chunks ({r['chunk_bytes'] / mb:.0f} MB) and "
            f"{r['segments']} FLAC audio segments of speech-like sound "
            f"({r['segment_bytes'] / mb:.0f} MB), as the recorder leaves them.",
            "",
            "Times at the end (after the last segment and chunk closed), median of the runs; "
            "hashing the joined files is included for Taskerino (staging a file in the blob "
            "store is that hash and a rename). The CPU column is the CPU time of the same "
            "steps (Taskerino's threads, or the ffmpeg processes): on a busy machine the wall "
            "time includes waiting for a core, the CPU time does not.",
            "",
            "| end path | audio | video + audio | total | target | ratio to ffmpeg | CPU s |",
            "|---|---|---|---|---|---|---|",
            f"| now: `session.m4a` joined while recording, finished; then muxed | "
            f"{m['audio_now']:.2f} s | {m['full_now']:.2f} s | **{now:.2f} s** | "
            f"≤ {TARGET_S:.0f} s | {now / ref:.2f}× | {cpu('audio_now', 'full_now')} |",
            f"| before: segments decoded and encoded into `session.flac` | "
            f"{m['audio_before']:.2f} s | {m['full_before']:.2f} s | {before:.2f} s | "
            f"≤ {TARGET_S:.0f} s | {before / ref:.2f}× | {cpu('audio_before', 'full_before')} |",
            f"| reference: `ffmpeg -f concat -c copy` (audio, then video + audio) | "
            f"{m['audio_ref']:.2f} s | {m['full_ref']:.2f} s | {ref:.2f} s | | 1.00× | "
            f"{cpu('audio_ref', 'full_ref')} |",
            f"| (video alone, no audio) | | {m['video_only']:.2f} s | {m['video_only']:.2f} s "
            f"| | | {cpu('video_only')} |",
            "",
            f"Joining while recording costs {m['append_now'] / r['segments'] * 1000:.1f} ms "
            f"per 10 s segment ({m['append_now']:.2f} s over the recording).",
            "",
            f"Verdict: {'met' if now <= TARGET_S else 'not met'}: {now:.2f} s against "
            f"≤ {TARGET_S:.0f} s; the audio adds {now - m['video_only']:.2f} s to the video's "
            f"own end, which alone takes {m['video_only']:.2f} s on this machine under this "
            f"load (load average above). The end with audio is {before / now:.1f}× faster than "
            "before.",
            "",
            f"Audio in the joined files: {r['audio_seconds_in_m4a']:.3f} s in `session.m4a`, "
            f"{r['audio_seconds_in_full']:.3f} s in the full MP4, "
            f"{r['audio_seconds_expected']:.3f} s recorded (the decoded samples equal the "
            "segments' exactly: tests/test_audio.py). Sizes: session.m4a "
            f"{r['m4a_bytes'] / mb:.0f} MB, session.flac (before) {r['flac_bytes'] / mb:.0f} MB, "
            f"full MP4 {r['full_bytes'] / mb:.0f} MB.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", default="end-audio")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="taskerino-bench-end-"))
    try:
        results = run(scratch, args.minutes, args.runs)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    payload = {
        "benchmark": "end-audio",
        "command": "python bench/bench_end_audio.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_after": os.getloadavg(),
        "target_s": TARGET_S,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    text = markdown(payload)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
