"""The web app under load while it records (spec §11), on loopback and bounded in time: 50
concurrent clients, each an open page (an event stream, and the session list, a session
and ranges of a video in turn, a fifth of a second apart on average, about 200 requests a
second in all) for 15 s, against `taskerino serve` recording a session in the same
process. No answer may fail, and the recorder must keep its drop rate under 1 %. The full
60 s runs, paced like this and with clients that never pause, are bench/bench_web_load.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .enriched import Enriched
from .web_helpers import Served
from .web_load import Targets, run_load

SECONDS = 15.0
CLIENTS = 50
THINK = 0.2  # seconds a client waits between answers, on average
RECORDING = {
    "name": "Recorded under load",
    "screenshots": False,
    "video": True,
    "sources": ["test:load"],
    "size": "1280x720",
    "fps": 15,
}


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory, enriched: Enriched) -> Iterator[Served]:
    served = Served(enriched.copy(tmp_path_factory.mktemp("load") / "home"), "--port", "0")
    yield served
    status, _, err = served.stop()
    assert status == 0, err


def dropped(stats: dict[str, Any]) -> tuple[float, float]:
    return stats["frames_dropped"], stats["frames_processed"]


def test_fifty_clients_while_a_session_records(server: Served, enriched: Enriched) -> None:
    recorded = server.api("GET", f"/api/sessions/{enriched.session_id}")
    video = recorded["attachments"][recorded["video"]["full_video_attachment_id"]]
    live = server.api("POST", "/api/sessions", RECORDING)["id"]
    time.sleep(1.5)  # the recorder is up to speed
    before = server.api("GET", f"/api/sessions/{live}/stats")
    targets = Targets(live, enriched.session_id, video["id"], video["size"])
    load = run_load(
        server.base, server.token, targets, seconds=SECONDS, clients=CLIENTS, think=THINK
    )
    after = server.api("GET", f"/api/sessions/{live}/stats")
    ended = server.api("POST", f"/api/sessions/{live}/end")

    summary = load.summary()
    assert load.failures == [], summary
    assert load.streams == CLIENTS and load.events >= CLIENTS * SECONDS / 2, summary
    for endpoint in ("list", "session", "media"):
        assert load.requests[endpoint] >= CLIENTS * 5, summary  # every client kept asking
    drops = after["frames_dropped"] - before["frames_dropped"]
    frames = drops + after["frames_processed"] - before["frames_processed"]
    assert frames >= 0.9 * 15 * SECONDS, (before, after)  # it kept recording at its pace
    assert drops / frames < 0.01, (drops, frames, summary)
    assert ended["status"] == "completed" and ended["video"]["full_video_attachment_id"]
    assert server.api("GET", f"/api/sessions/{live}/stats")["drop_rate"] < 0.01
