"""The JSON the API answers with, shared by the API and the pages (a page shows what its
JSON twin holds). Everything here reads through the front door."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import SearchHit, SessionPage, SessionSummary, to_dict
from ..sessions import Taskerino
from ..sessions.views import media_url as media_url
from ..sessions.views import review_json


def find_sessions(library: Taskerino, q: Mapping[str, str]) -> SessionPage:
    """The page of sessions the list's query parameters ask for (the API and the page
    take the same ones; the rule book checks them)."""
    return library.find_sessions(
        status=q.get("status"),
        query=q.get("q"),
        since=q.get("from"),
        until=q.get("to"),
        tag=q.get("tag"),
        sort=q.get("sort"),
        limit=q.get("limit"),
        offset=q.get("offset"),
    )


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


def hit_view(hit: SearchHit) -> dict[str, Any]:
    """A search hit with `url`: the session page at the hit's moment."""
    data = to_dict(hit)
    data["url"] = f"/sessions/{hit.session_id}?t={hit.media_offset:g}"
    return data


def session_view(library: Taskerino, session_id: str) -> dict[str, Any]:
    """The session of `sessions show --json`, with a URL for each attachment instead of
    its local path, and `media`: the one playable file (the video, else the audio)."""
    return review_json(library.session_json(session_id))


def stats_view(stats: object, disk_free: int, elapsed: float | None) -> dict[str, Any]:
    """Recording stats with the free disk space and the time it lasts at this bitrate."""
    data = to_dict(stats)
    rate = data["bitrate_kbps"] * 1000 / 8  # bytes per second
    data["disk_free"] = disk_free
    data["seconds_left"] = disk_free / rate if rate > 0 else None
    data["elapsed"] = elapsed
    return data
