"""The whole team profile at once: metadata in PostgreSQL, media in S3 (moto's server mode,
the stand-in for S3), a recorder killed on one "machine" and recovered by another process,
a worker enriching from both, search and the web app over both."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from taskerino.models import parse_time

from .cli_helpers import TASKERINO, run
from .postgres_server import PostgresServer
from .s3_server import MotoS3, object_keys
from .web_helpers import Served
from .xterm import xterm

pytestmark = pytest.mark.usefixtures("xdisplay")

PREFIX = "team/media"
WORD = "kilimanjaro"


@pytest.fixture
def team(
    postgres: PostgresServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """A fresh database and bucket, named by the environment as a team would."""
    store, media = postgres.new_database(), f"s3://{s3_bucket}/{PREFIX}"
    monkeypatch.setenv("TASKERINO_STORE", store)
    monkeypatch.setenv("TASKERINO_MEDIA", media)
    return store, media


def cli(home: Path, *args: str, timeout: float = 180.0) -> Any:
    result = run(home, *args, "--json", timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_record_kill_recover_enrich_search_and_serve_on_postgresql_and_s3(
    team: tuple[str, str], s3_server: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    recorder_home, other_home = tmp_path / "laptop", tmp_path / "server"
    recorder_home.mkdir(mode=0o700)
    other_home.mkdir(mode=0o700)
    with xterm("Kilimanjaro plan", [f"{WORD} expedition budget", "second line"], cols=32):
        ended = cli(
            recorder_home, "record", "--name", "team demo", "--duration", "3", "--video",
            "--screenshot-interval", "1",
        )  # fmt: skip
        assert ended["status"] == "completed"
        # A second recording, killed: its machine "dies" with it.
        proc = subprocess.Popen(
            [*TASKERINO, "--home", str(recorder_home), "record", "--name", "killed",
             "--video", "--screenshot-interval", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not any(s["name"] == "killed" for s in cli(other_home, "sessions", "list")):
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.2)
            time.sleep(3.0)
        finally:
            proc.kill()
            proc.communicate()
    # Recovery from another data folder (another machine's view): the recorder's process
    # is on this host, so it is known dead at once. What reached the store and the bucket
    # is kept: the screenshots, uploaded as each was taken. (Its video chunk, still open,
    # never left the dead machine: chunks go up as each closes.)
    (killed,) = [s for s in cli(other_home, "sessions", "list") if s["name"] == "killed"]
    assert killed["status"] == "interrupted"
    shown = cli(other_home, "sessions", "show", killed["id"])
    assert shown["status"] == "interrupted" and len(shown["screenshots"]) >= 2, shown
    # The dead recorder's own folder, opened again, finds nothing left to do or to mend.
    assert cli(recorder_home, "doctor") == {"ok": True, "problems": []}
    for session in (ended, shown):
        keys = {f"{PREFIX}/{a['hash'][:2]}/{a['hash']}" for a in session["attachments"].values()}
        assert keys <= set(object_keys(s3_server.client(), s3_bucket))
        assert all(a["path"] is None for a in session["attachments"].values())
    assert parse_time(shown["start_time"]) > parse_time(ended["start_time"])

    worker = run(other_home, "worker", "--drain", timeout=300)
    assert worker.returncode == 0, worker.stderr
    hits = cli(other_home, "search", WORD)
    assert ended["id"] in {h["session_id"] for h in hits}, hits
    assert cli(other_home, "doctor") == {"ok": True, "problems": []}

    served = Served(other_home, "--port", "0", "--no-worker")
    try:
        listed = served.api("GET", "/api/sessions")["sessions"]
        assert {s["id"] for s in listed} == {ended["id"], shown["id"]}
        video = ended["video"]["full_video_attachment_id"]
        part = served.http.get(f"/api/media/{video}", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100
        assert part.content[4:8] == b"ftyp"
        assert part.headers["content-range"].startswith("bytes 0-99/")
    finally:
        assert served.stop()[0] == 0
