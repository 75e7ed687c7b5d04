from __future__ import annotations

import json
from pathlib import Path

from taskerino.models import (
    SCHEMA_VERSION,
    ContextItem,
    RecordingStats,
    Session,
    SessionConfig,
    SessionScreenshot,
    SessionVideo,
    SessionVideoChunk,
    drop_rate,
    from_dict,
    health_for,
    to_dict,
)

FIXTURES = Path(__file__).parent / "fixtures"


def full_session() -> Session:
    session = Session(
        id="s",
        name="n",
        start_time="2026-01-01T00:00:00.000Z",
        config=SessionConfig(video=True, sources=["display:1"], fps=30),
    )
    session.screenshots.append(SessionScreenshot("p", "s", "t", 1.5, "a", "h", "c", True))
    session.context_items.append(ContextItem("c", "s", "t", 2.0, "note", "hello"))
    session.video = SessionVideo("v", "s", 1920, 1080, 30, ["display:1"], "passthrough")
    session.video.chunks.append(SessionVideoChunk("k", "v", "a", 0, 0.0, 60.0, 900, 1000))
    session.tags = ["x"]
    session.enrichment = {"ocr": "done"}
    return session


def test_round_trip_through_json() -> None:
    session = full_session()
    text = json.dumps(to_dict(session))
    back = from_dict(Session, json.loads(text))
    assert back == session
    assert isinstance(back.video, SessionVideo)
    assert isinstance(back.video.chunks[0], SessionVideoChunk)
    assert back.schema_version == SCHEMA_VERSION


def test_old_record_loads_with_defaults() -> None:
    data = json.loads((FIXTURES / "session-old.json").read_text())
    session = from_dict(Session, data)
    assert session.name == "Written by an early version"
    assert session.total_duration == 1800.0 and isinstance(session.total_duration, float)
    assert session.description == "" and session.tags == [] and session.enrichment == {}
    assert session.video is None and session.context_items == []
    assert session.config.screenshot_interval == 60.0 and session.config.fps == 15
    shot = session.screenshots[0]
    assert shot.flagged is False and shot.user_comment is None
    assert shot.analysis_status == "pending"
    assert session.schema_version == SCHEMA_VERSION


def test_newer_record_keeps_loading() -> None:
    data = to_dict(full_session())
    data["schema_version"] = SCHEMA_VERSION + 5
    data["future_field"] = {"x": 1}
    assert from_dict(Session, data).name == "n"


def test_drop_rate_and_health_thresholds() -> None:
    assert drop_rate(0, 0) == 0.0
    assert drop_rate(99, 1) == 0.01
    assert health_for(0.0099) == "healthy"
    assert health_for(0.01) == "warning"
    assert health_for(0.0499) == "warning"
    assert health_for(0.05) == "critical"
    assert from_dict(RecordingStats, {"session_id": "s"}).health == "healthy"
