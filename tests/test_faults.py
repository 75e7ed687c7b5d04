"""Faults of spec §11 that need more than one process: a full disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskerino.virtual import VirtualAudio, VirtualDisplay

from .cli_helpers import run, run_json, start, wait_for_session


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB file system of its own (tmpfs), so that filling it harms nothing else."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_ends_the_session_with_what_was_written(
    small_disk: Path, xdisplay: VirtualDisplay
) -> None:
    proc = start(
        small_disk,
        "--screenshot-interval",
        "1",
        "--video",
        "--source",
        "test:red",
        "--size",
        "1280x720",
        "--json",
    )
    try:
        sid = wait_for_session(small_disk)["id"]
        # Some video on disk first: a fragment of pictures, not only the chunk's header
        # (written as the chunk opens). On a loaded machine x264 may still hold the
        # first pictures seconds after the session appears.
        deadline = time.monotonic() + 30
        while not any(
            b"moof" in c.read_bytes() for c in small_disk.glob("staging/*/video/chunk-*.mp4")
        ):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        filler = small_disk / "filler"
        with filler.open("wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
            except OSError:
                pass
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert "error: recording stopped early" in err and "No space left" in err
    assert "Traceback" not in err
    ended = json.loads(out)
    assert ended["id"] == sid and ended["status"] == "completed"
    video = ended["video"]
    assert video["chunking_status"] == "complete" and video["duration"] > 0.5, err
    assert len(ended["screenshots"]) >= 1
    filler.unlink()
    assert run_json(small_disk, "doctor") == {"ok": True, "problems": []}


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder`, leaving about `leave` bytes free."""
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free - leave
    # Private like everything in the data folder, so doctor has nothing to say about it.
    with open(os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600), "wb", buffering=0) as f:
        try:
            while free > 0:
                f.write(b"\0" * min(free, 1 << 16))
                free -= 1 << 16
        except OSError:
            pass
    return filler


RECORD = ["--duration", "4", "--screenshot-interval", "1", "--video", "--source", "test:moving"]


def test_disk_full_at_first_open_never_blocks_the_library(
    small_disk: Path, xdisplay: VirtualDisplay
) -> None:
    filler = fill(small_disk, leave=600_000)  # no room for the 16 MB reserve
    result = run(small_disk, "record", *RECORD, "--size", "1280x720", "--json")
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr
    if result.returncode == 1:
        assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    # While the disk stays full, the library can be read.
    listed = run(small_disk, "sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    doctor = run(small_disk, "doctor")
    assert "Traceback" not in doctor.stderr and doctor.returncode in (0, 1)
    for row in rows:
        shown = run(small_disk, "sessions", "show", row["id"])
        assert shown.returncode == 0, shown.stderr
    # Once there is room again, whatever was left live is recovered and all is clean.
    filler.unlink()
    assert run_json(small_disk, "doctor") == {"ok": True, "problems": []}
    assert all(
        r["status"] in ("completed", "interrupted")
        for r in run_json(small_disk, "sessions", "list")
    )


def test_disk_full_during_recovery_is_reported_and_retried(
    small_disk: Path, xdisplay: VirtualDisplay
) -> None:
    proc = start(
        small_disk,
        "--screenshot-interval",
        "1",
        "--video",
        "--source",
        "test:moving",
        "--size",
        "1280x720",
    )
    sid = wait_for_session(small_disk)["id"]
    time.sleep(2.0)
    proc.kill()
    proc.communicate()
    (small_disk / "reserve.bin").unlink(missing_ok=True)
    filler = fill(small_disk)
    listed = run(small_disk, "sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [sid]
    doctor = run(small_disk, "doctor", "--json")
    assert "Traceback" not in doctor.stderr
    report = json.loads(doctor.stdout)
    if not report["ok"]:
        assert any(sid in p for p in report["problems"]), report
    filler.unlink()
    shown = run_json(small_disk, "sessions", "show", sid)
    assert shown["status"] == "interrupted"
    assert shown["video"]["chunking_status"] == "complete"
    assert run_json(small_disk, "doctor") == {"ok": True, "problems": []}


def test_disk_full_during_recording_with_audio(
    small_disk: Path, xdisplay: VirtualDisplay, pulse: VirtualAudio
) -> None:
    proc = start(
        small_disk,
        "--screenshot-interval",
        "1",
        "--video",
        "--source",
        "test:red",
        "--size",
        "1280x720",
        "--system-audio",
        "--json",
    )
    try:
        sid = wait_for_session(small_disk)["id"]
        time.sleep(1.5)
        filler = fill(small_disk)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert proc.returncode == 1 and "error: recording stopped early" in err
    ended = json.loads(out)
    assert ended["id"] == sid and ended["status"] == "completed"
    filler.unlink()
    assert run_json(small_disk, "doctor") == {"ok": True, "problems": []}


def test_disk_full_while_ending(small_disk: Path, xdisplay: VirtualDisplay) -> None:
    proc = start(
        small_disk,
        "--screenshot-interval",
        "1",
        "--video",
        "--source",
        "test:moving",
        "--size",
        "1280x720",
        "--json",
    )
    try:
        sid = wait_for_session(small_disk)["id"]
        time.sleep(2.0)
        filler = fill(small_disk)
        proc.send_signal(signal.SIGTERM)  # the end starts on a full disk
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 1), err
    filler.unlink()
    shown = run_json(small_disk, "sessions", "show", sid)
    assert shown["status"] in ("completed", "interrupted")
    assert shown["video"]["full_video_attachment_id"] is not None, (err, shown["video"])
    assert run_json(small_disk, "doctor") == {"ok": True, "problems": []}
