"""`taskerino serve` as a real process on loopback, for the serve and browser tests."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2

from .cli_helpers import TASKERINO

LOGIN = re.compile(r"^http://(127\.0\.0\.1):(\d+)/\?token=([A-Za-z0-9_-]{40,})$")


class Served:
    """A `taskerino serve` process; `stop()` sends a signal and returns its exit status."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.process = subprocess.Popen(
            [*TASKERINO, "--home", str(home), "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        assert ready, "serve printed no login URL within 30 s"
        self.line = self.process.stdout.readline().rstrip("\n")
        match = LOGIN.match(self.line)
        assert match, f"not a login URL: {self.line!r}"
        self.port = int(match[2])
        self.token = match[3]
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx2.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    def wait_completed(self, session_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data: dict[str, Any] = self.api("GET", f"/api/sessions/{session_id}")
            if data["status"] == "completed":
                return data
            assert time.monotonic() < deadline, f"session {session_id} did not end"
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Signal the server; (exit status, the rest of stdout, stderr)."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            out, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return self.process.returncode, out, err
