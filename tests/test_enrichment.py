"""Enrichment end to end: a session recorded on Xvfb with real windows and real speech is
made findable by the worker (real Tesseract, real faster-whisper, real SQLite), and a
worker killed at random moments changes nothing in the result."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from taskerino.enrich.worker import WorkerConfig
from taskerino.sessions import Taskerino
from taskerino.store.base import Backoff

from .enriched import Enriched


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, enriched: Enriched
) -> tuple[Path, str, dict[str, float]]:
    """A copy of the run's enriched session (see `tests.enriched`)."""
    home = enriched.copy(tmp_path_factory.mktemp("enrich") / "home")
    return home, enriched.session_id, enriched.moments


def results(library: Taskerino, session_id: str) -> dict[str, Any]:
    """What enrichment produced, without ids: equal for equal work."""
    s = library.get(session_id)
    assert s.video is not None
    return {
        "ocr": sorted((o.media_offset, o.screenshot_id or "", o.text) for o in s.ocr),
        "transcript": sorted((t.start_offset, t.end_offset, t.text) for t in s.transcript),
        "chapters": [
            (c.start_offset, c.end_offset, c.title, tuple(c.key_topics)) for c in s.video.chapters
        ],
        "hits": [
            (h.kind, h.media_offset, h.snippet)
            for q in ("rollout", "friday", "deploy")
            for h in library.search(q, session_id=session_id)
        ],
    }


def test_every_recorded_moment_is_findable(recorded: tuple[Path, str, dict[str, float]]) -> None:
    home, sid, moments = recorded
    with Taskerino.open(home) as library:
        session = library.get(sid)
        assert {stage: st.status for stage, st in session.enrichment.items()} == {
            "ocr": "done",
            "transcribe": "done",
            "chapters": "done",
            "index": "done",
        }, session.enrichment
        # The activity track lists both windows, the switch where it happened.
        titles = [(a.title, a.media_offset) for a in session.activity]
        assert [t for t, _ in titles][:2] == ["Billing console", "Deploy console"], titles
        assert abs(titles[1][1] - moments["switch"]) < 1.5, (titles, moments)
        # What was on the screen: found by OCR, with word boxes.
        seen = library.search("rollout", session_id=sid)
        ocr_hits = [h for h in seen if h.kind == "ocr"]
        assert ocr_hits and all(h.words for h in ocr_hits), seen
        assert any(w.text.lower() == "rollout" for w in ocr_hits[0].words)
        # What was said: found in the transcript at its moment.
        said = [h for h in library.search("friday", session_id=sid) if h.kind == "transcript"]
        assert said, [t.text for t in session.transcript]
        assert abs(said[0].media_offset - moments["speech"]) < 2.5, (said, moments)
        assert "[friday]" in said[0].snippet.lower()
        # Which window was in front: found in the activity track.
        front = [h for h in library.search("deploy", session_id=sid) if h.kind == "activity"]
        assert front and abs(front[0].media_offset - moments["switch"]) < 1.5
        # A boundary near the switch, the new window's name in the title after it.
        assert session.video is not None
        chapters = session.video.chapters
        assert len(chapters) >= 2, chapters
        after = next(c for c in chapters if abs(c.start_offset - moments["switch"]) < 3.0)
        assert "Deploy console" in after.title, [c.title for c in chapters]
        assert all(c.thumbnail_attachment_id for c in chapters)
        # A note added later is searchable at once.
        library.add_note(sid, "flaky rollback script")
        assert [h.kind for h in library.search("rollback", session_id=sid)] == ["note"]
        assert library.doctor(deep=True) == []


WORKER = textwrap.dedent(
    """
    import sys
    from taskerino.enrich.worker import WorkerConfig
    from taskerino.sessions import Taskerino
    from taskerino.store.base import Backoff

    with Taskerino.open(sys.argv[1], recover=False) as library:
        config = WorkerConfig(
            lease_seconds=1.5, max_attempts=100, backoff=Backoff(base=0.1, cap=0.2)
        )
        library.worker(1, config).run(drain=True)
    """
)


def test_a_worker_killed_at_random_moments_changes_nothing(
    recorded: tuple[Path, str, dict[str, float]],
) -> None:
    home, sid, _ = recorded
    with Taskerino.open(home) as library:
        before = results(library, sid)
    rng = random.Random(20261125)
    kills = 0
    for _ in range(10):
        with Taskerino.open(home) as library:
            library.enrich(sid)  # every stage again (those still queued stay as they are)
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(home)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # From "still starting" to "well into a stage": a run here takes about 3 s.
        time.sleep(rng.uniform(0.8, 3.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        time.sleep(1.6)  # the lease of whatever it held runs out
    assert kills >= 7
    with Taskerino.open(home) as library:
        config = WorkerConfig(lease_seconds=1.5, max_attempts=100, backoff=Backoff(base=0.1))
        library.worker(2, config).run(drain=True)
        after = results(library, sid)
        assert after == before
        session = library.get(sid)
        assert all(st.status == "done" for st in session.enrichment.values())
        assert not library.jobs("queued") and not library.jobs("running")
        assert library.doctor(deep=True) == []


def test_cli_search_and_jobs(recorded: tuple[Path, str, dict[str, float]]) -> None:
    home, sid, _ = recorded
    env = {**os.environ}
    run = [sys.executable, "-m", "taskerino", "--home", str(home)]
    found = subprocess.run([*run, "search", "roll*", "--json"], capture_output=True, env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and {"session_id", "kind", "media_offset", "snippet", "words"} <= set(hits[0])
    assert hits[0]["session_id"] == sid
    bad = subprocess.run([*run, "search", '"unbalanced'], capture_output=True, text=True)
    assert (
        bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in (bad.stderr)
    )
    jobs = subprocess.run([*run, "jobs", "list", "--json"], capture_output=True, text=True)
    assert jobs.returncode == 0 and {j["kind"] for j in json.loads(jobs.stdout)} >= {
        "ocr",
        "transcribe",
        "chapters",
        "index",
    }
