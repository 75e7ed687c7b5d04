"""The JSON shapes of §7 (`sessions list --json`, `sessions show --json`), shared by the CLI
and the web API."""

from __future__ import annotations

from typing import Any

from ..models import Attachment, Session, SessionSummary, to_dict
from ..store.media import MediaLibrary


def summary_json(summary: SessionSummary) -> dict[str, Any]:
    return dict(vars(summary))  # flat: asdict's deep copy costs 20 µs a row


def session_json(
    session: Session, attachments: list[Attachment], media: MediaLibrary
) -> dict[str, Any]:
    """The session object of §1 plus `attachments`: id -> attachment with its local `path`."""
    data = to_dict(session)
    entries = {}
    for attachment in attachments:
        entry = to_dict(attachment)
        path = media.local_path(attachment)
        entry["path"] = str(path) if path else None
        entries[attachment.id] = entry
    data["attachments"] = entries
    return data


def media_url(attachment_id: str) -> str:
    """Where the review web app serves an attachment's bytes."""
    return f"/api/media/{attachment_id}"


def review_json(data: dict[str, Any]) -> dict[str, Any]:
    """`session_json` as the API answers it (and an export's `session.json` holds it): a
    URL for each attachment instead of its local path, and `media`: the one playable file
    (the video, else the audio)."""
    for attachment in data["attachments"].values():
        attachment.pop("path", None)
        attachment["url"] = media_url(attachment["id"])
    video = data.get("video") or {}
    playable = video.get("full_video_attachment_id") or data.get("audio_attachment_id")
    data["media"] = data["attachments"].get(playable) if playable else None
    return data
