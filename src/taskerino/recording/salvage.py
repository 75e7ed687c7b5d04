"""What recovery does with the staging folder of a recorder that died, by recorder kind.

Each salvager turns what the dead recorder left (closed and partial media) into attachments
and returns a finisher for the transaction that marks the session interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..models import Session
from ..store.media import MediaLibrary
from .audio import salvage_audio
from .base import Finisher
from .video import salvage_video

Salvager = Callable[[Session, Path, MediaLibrary], Finisher | None]


def _screenshots(session: Session, folder: Path, media: MediaLibrary) -> Finisher | None:
    # A screenshot is committed whole or not at all; a half-written picture is dropped.
    for file in folder.iterdir():
        file.unlink(missing_ok=True)
    return None


# Audio first: the video's joined file carries the salvaged audio.
SALVAGERS: dict[str, Salvager] = {
    "screenshots": _screenshots,
    "audio": salvage_audio,
    "video": salvage_video,
}
