from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskerino.models import (
    SCHEMA_VERSION,
    ActivityEvent,
    ContextItem,
    OcrText,
    OcrWord,
    RecordingStats,
    Session,
    SessionConfig,
    SessionScreenshot,
    SessionVideo,
    SessionVideoChunk,
    StageStatus,
    TranscriptLine,
    VideoChapter,
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
    session.video.chapters.append(VideoChapter("h", "s", 0.0, 60.0, "Editor", key_topics=["a"]))
    session.activity.append(ActivityEvent("e", "s", "t", 0.5, "Code", "main.py"))
    session.transcript.append(TranscriptLine("l", "s", 1.0, 3.5, "hello", "system"))
    session.ocr.append(OcrText("o", "s", 1.5, "p", "Total", [OcrWord("Total", 1, 2, 30, 12)]))
    session.tags = ["x"]
    session.enrichment = {"ocr": StageStatus("failed", "no tesseract")}
    return session


def test_round_trip_through_json() -> None:
    session = full_session()
    text = json.dumps(to_dict(session))
    back = from_dict(Session, json.loads(text))
    assert back == session
    assert isinstance(back.video, SessionVideo)
    assert isinstance(back.video.chunks[0], SessionVideoChunk)
    assert isinstance(back.video.chapters[0], VideoChapter)
    assert isinstance(back.ocr[0].words[0], OcrWord)
    assert isinstance(back.enrichment["ocr"], StageStatus)
    assert back.schema_version == SCHEMA_VERSION


def test_old_record_loads_with_defaults() -> None:
    data = json.loads((FIXTURES / "session-old.json").read_text())
    session = from_dict(Session, data)
    assert session.name == "Written by an early version"
    assert session.total_duration == 1800.0 and isinstance(session.total_duration, float)
    assert session.description == "" and session.tags == [] and session.enrichment == {}
    assert session.video is None and session.context_items == []
    assert session.activity == [] and session.transcript == [] and session.ocr == []
    assert session.config.screenshot_interval == 60.0 and session.config.fps == 15
    shot = session.screenshots[0]
    assert shot.flagged is False and shot.user_comment is None
    assert shot.analysis_status == "pending"
    assert session.schema_version == SCHEMA_VERSION


def test_version_1_stage_statuses_become_stage_status_records() -> None:
    data = json.loads((FIXTURES / "session-old.json").read_text())
    data["schema_version"] = 1
    data["enrichment"] = {
        "ocr": "done",
        "transcribe": "failed: no model named tiny.xx",
        "chapters": "half way",
        "index": {"status": "running", "error": None, "updated_at": "2026-01-05T10:00:00.000Z"},
    }
    session = from_dict(Session, data)
    when = "2026-01-05T09:30:00.000Z"  # the session's end: the best guess of when
    assert session.enrichment == {
        "ocr": StageStatus("done", None, when),
        "transcribe": StageStatus("failed", "no model named tiny.xx", when),
        "chapters": StageStatus("pending", "half way", when),
        "index": StageStatus("running", None, "2026-01-05T10:00:00.000Z"),
    }
    assert session.schema_version == SCHEMA_VERSION


def test_a_stage_status_that_is_no_object_is_refused() -> None:
    data = to_dict(full_session())
    data["enrichment"] = {"ocr": "done"}  # version 2 keeps objects: this is damage
    with pytest.raises(ValueError, match="StageStatus"):
        from_dict(Session, data)


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
