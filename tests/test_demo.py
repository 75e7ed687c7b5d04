"""The demo as `scripts/demo` runs it on a machine without a screen: it records on its own
virtual display with its own PulseAudio, enriches, prints what it found, serves the
session until Ctrl-C, and leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2

LINK = re.compile(r"the demo session: (http://127\.0\.0\.1:\d+)/sessions/(\w+)\?token=(\S+)")


def test_the_demo_records_enriches_reports_and_serves(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "PULSE_SERVER")}
    command = [sys.executable, "-m", "taskerino.demo", "--home", str(home)]
    demo = subprocess.Popen(
        [*command, "--seconds", "8", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert demo.stdout is not None
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("from another machine" in line for line in printed):
            assert demo.poll() is None and time.monotonic() < deadline, "".join(printed)
            time.sleep(0.2)
        text = "".join(printed)
        display = re.search(r"virtual display :(\d+)", text)
        assert display, text
        assert "with sound" in text, text
        for stage in ("ocr", "transcribe", "chapters", "index"):  # progress per stage
            assert re.search(rf"\d s  {stage} +pending", text), text
            assert re.search(rf"\d s  {stage} +done", text), text
        assert re.search(r"\d s  ocr +running", text), text
        assert re.search(r"chapter 0:00-0:0\d  XTerm: Billing console", text), text
        assert re.search(r"said at 0:0\d: \w+", text), text
        assert re.search(r"search 'invoice': \d+ hits; best: ocr at 0:0\d: .*\[INVOICE\]", text)
        assert "doctor: ok" in text
        link = LINK.search(text)
        assert link, text
        base, session_id, token = link.groups()
        with httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
            session = http.get(f"/api/sessions/{session_id}").json()
            page = http.get(f"/sessions/{session_id}")
        assert session["status"] == "completed" and session["transcript"], session
        assert {s["status"] for s in session["enrichment"].values()} == {"done"}
        assert page.status_code == 200 and "Taskerino demo" in page.text
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.wait(60)
        reader.join(10)
        errors = demo.stderr.read() if demo.stderr else ""
        demo.stdout.close()
        if demo.stderr:
            demo.stderr.close()
    assert demo.returncode == 0, errors
    assert "Traceback" not in errors
    # Its virtual display and terminals are gone with it.
    assert not Path(f"/tmp/.X11-unix/X{display[1]}").exists()
