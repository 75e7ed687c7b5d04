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
