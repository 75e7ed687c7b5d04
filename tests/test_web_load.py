"""The web app under load while it records (spec §11), on loopback and bounded in time: 50
concurrent clients, each an open page (an event stream, and the session list, a session
and ranges of a video in turn, half a second apart on average: about 100 requests a
second in all, far more than pages being read ask for) for 15 s, against `taskerino
serve` recording a session in the same process. No answer may fail, and the recorder in
the server must drop under 1 % of its frames more than the same recording made at the
same time by `taskerino record` in a process of its own, which serves no one: the machine
is shared (CI, other runs), and what others take from it hits both alike. The full 60 s
runs, paced at 0.2 s and with clients that never pause, are bench/bench_web_load.py."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .cli_helpers import TASKERINO
from .enriched import Enriched
from .web_helpers import Served
from .web_load import Targets, run_load

SECONDS = 15.0
CLIENTS = 50
THINK = 0.5  # seconds a client waits between answers, on average
FPS = 15
RECORDING = {
    "screenshots": False,
    "video": True,
    "sources": ["test:load"],
    "size": "1280x720",
    "fps": FPS,
}


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory, enriched: Enriched) -> Iterator[Served]:
    served = Served(enriched.copy(tmp_path_factory.mktemp("load") / "home"), "--port", "0")
    yield served
    status, _, err = served.stop()
    assert status == 0, err


def window(first: dict[str, Any], last: dict[str, Any]) -> tuple[float, float]:
    """(frames dropped, frames in all) between two readings of a recording's stats."""
    drops = last["frames_dropped"] - first["frames_dropped"]
    return drops, drops + last["frames_processed"] - first["frames_processed"]


def test_fifty_clients_while_a_session_records(server: Served, enriched: Enriched) -> None:
    recorded = server.api("GET", f"/api/sessions/{enriched.session_id}")
    video = recorded["attachments"][recorded["video"]["full_video_attachment_id"]]
    live = server.api("POST", "/api/sessions", {"name": "In the server", **RECORDING})["id"]
    options = ["--no-screenshots", "--video", "--source", "test:control", "--size", "1280x720"]
    options += ["--fps", str(FPS), "--duration", str(SECONDS + 3), "--json"]
    control = subprocess.Popen(
        [*TASKERINO, "--home", str(server.home), "record", "--name", "Beside", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # both recorders are up to speed
    before = server.api("GET", f"/api/sessions/{live}/stats")
    targets = Targets(live, enriched.session_id, video["id"], video["size"])
    load = run_load(
        server.base, server.token, targets, seconds=SECONDS, clients=CLIENTS, think=THINK
    )
    after = server.api("GET", f"/api/sessions/{live}/stats")
    ended = server.api("POST", f"/api/sessions/{live}/end")
    out, err = control.communicate(timeout=60)
    assert control.returncode == 0, err
    beside = server.api("GET", f"/api/sessions/{json.loads(out)['id']}/stats")

    summary = load.summary()
    assert load.failures == [], summary
    assert load.streams == CLIENTS and load.events >= CLIENTS * SECONDS / 2, summary
    for endpoint in ("list", "session", "media"):
        assert load.requests[endpoint] >= CLIENTS * 5, summary  # every client kept asking
    drops, frames = window(before, after)
    assert frames >= 0.9 * FPS * SECONDS, (before, after)  # it kept recording at its pace
    assert drops / frames < 0.01 + beside["drop_rate"], (drops, frames, beside, summary)
    assert ended["status"] == "completed" and ended["video"]["full_video_attachment_id"]
