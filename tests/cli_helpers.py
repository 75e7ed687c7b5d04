"""Running the real `taskerino` command as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TASKERINO = [sys.executable, "-m", "taskerino"]


def run(
    home: Path | None, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["--home", str(home)] if home is not None else []
    return subprocess.run(
        [*TASKERINO, *prefix, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_json(home: Path, *args: str) -> Any:
    result = run(home, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TASKERINO, "--home", str(home), "record", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_session(home: Path, timeout: float = 20.0) -> dict[str, Any]:
    """The first session of `home` once it shows in `sessions list`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = run_json(home, "sessions", "list")
        if rows:
            first: dict[str, Any] = rows[0]
            return first
        time.sleep(0.1)
    raise AssertionError("no session appeared")


def blob_files(home: Path) -> set[str]:
    blobs = home / "blobs"
    return {p.name for p in blobs.glob("??/*")} if blobs.is_dir() else set()
