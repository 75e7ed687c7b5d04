"""Row decoding that both SQL stores share: the columns are stored the same way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..models import SessionSummary


def json_column(text: str, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """A stored JSON column; ValueError (reported as damage) unless it holds a `kind`."""
    value = json.loads(text)
    if not isinstance(value, kind):
        raise ValueError(f"expected a JSON {kind.__name__}, found {text[:40]!r}")
    return value


def summaries(rows: Sequence[Sequence[Any]]) -> list[SessionSummary]:
    """Rows of the stores' SUMMARY columns (id, name, status, start_time, end_time,
    total_duration, screenshot_count, audio_segment_count, has_video, description, tags)
    as SessionSummary objects.

    Tags repeat from session to session (a project's sessions share them), so each distinct
    text is parsed once per listing; every summary still gets a list of its own. At 10 000
    sessions parsing every row's tags was a third of the listing's time.
    """
    parsed: dict[str, list[Any]] = {"[]": []}
    result = []
    for r in rows:
        text = r[10]
        tags = parsed.get(text)
        if tags is None:
            tags = parsed[text] = json_column(text, list)
        summary = SessionSummary(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9], [*tags]
        )
        result.append(summary)
    return result
