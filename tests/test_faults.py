"""Faults of spec §11 that need more than one process: a full disk."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskerino.virtual import VirtualDisplay

from .cli_helpers import run_json, start, wait_for_session


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB file system of its own (tmpfs), so that filling it harms nothing else."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)],
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
        time.sleep(1.5)
        filler = small_disk / "filler"
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
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
    assert video["chunking_status"] == "complete" and video["duration"] > 0.5
    assert len(ended["screenshots"]) >= 1
    filler.unlink()
    assert run_json(small_disk, "doctor") == {"ok": True, "problems": []}
