"""The JSON the API answers with, shared by the API and the pages (a page shows what its
JSON twin holds). Everything here reads through the front door."""

from __future__ import annotations

from typing import Any

from ..models import SessionPage, SessionSummary, to_dict
from ..sessions import Taskerino

SEARCH_SNIPPET = 160


def media_url(attachment_id: str) -> str:
    return f"/api/media/{attachment_id}"


def summary_view(summary: SessionSummary, thumbnail: str | None) -> dict[str, Any]:
    data = dict(vars(summary))
    data["thumbnail_url"] = media_url(thumbnail) if thumbnail else None
    data["url"] = f"/sessions/{summary.id}"
    return data


def page_view(page: SessionPage) -> dict[str, Any]:
    return {
        "sessions": [summary_view(s, page.thumbnails.get(s.id)) for s in page.sessions],
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
    }


def session_view(library: Taskerino, session_id: str) -> dict[str, Any]:
    """The session of `sessions show --json`, with a URL for each attachment instead of
    its local path, and `media`: the one playable file (the video, else the audio)."""
    data = library.session_json(session_id)
    for attachment in data["attachments"].values():
        attachment.pop("path", None)
        attachment["url"] = media_url(attachment["id"])
    video = data.get("video") or {}
    playable = video.get("full_video_attachment_id") or data.get("audio_attachment_id")
    data["media"] = data["attachments"].get(playable) if playable else None
    return data


def session_hits(library: Taskerino, query: str, limit: int) -> list[dict[str, Any]]:
    """Sessions whose name, description or tags hold `query`, as search hits."""
    page = library.find_sessions(query=query, limit=limit)
    hits = []
    for s in page.sessions:
        text = next(
            (t for t in (s.name, s.description, *s.tags) if query.casefold() in t.casefold()),
            s.name,
        )
        hits.append(
            {
                "session_id": s.id,
                "session_name": s.name,
                "kind": "session",
                "media_offset": 0.0,
                "snippet": mark(text, query),
                "words": [],
            }
        )
    return hits


def mark(text: str, query: str) -> str:
    """`text` cut around the first match of `query`, the match marked with [ ]."""
    at = text.casefold().find(query.casefold())
    if at < 0 or not query:
        return text[:SEARCH_SNIPPET]
    start = max(0, at - SEARCH_SNIPPET // 2)
    end = at + len(query)
    tail = text[end : end + SEARCH_SNIPPET // 2]
    head = ("…" if start else "") + text[start:at]
    return f"{head}[{text[at:end]}]{tail}{'…' if end + len(tail) < len(text) else ''}"


def stats_view(stats: object, disk_free: int, elapsed: float | None) -> dict[str, Any]:
    """Recording stats with the free disk space and the time it lasts at this bitrate."""
    data = to_dict(stats)
    rate = data["bitrate_kbps"] * 1000 / 8  # bytes per second
    data["disk_free"] = disk_free
    data["seconds_left"] = disk_free / rate if rate > 0 else None
    data["elapsed"] = elapsed
    return data
