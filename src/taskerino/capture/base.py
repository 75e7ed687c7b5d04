"""The capture interface every platform back end implements.

A `Source` yields BGRA frames (numpy uint8 arrays of shape (height, width, 4)); a
`CaptureBackend` lists what can be captured and opens sources by id. `get_backend()` in
`taskerino.capture` picks the back end for the running platform.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CaptureError
from ..frame import Box, Frame


@dataclass(frozen=True)
class DisplayInfo:
    id: str  # "display:N", N from 1
    name: str
    width: int
    height: int
    x: int
    y: int
    primary: bool


@dataclass(frozen=True)
class WindowInfo:
    id: str  # "window:0x1a00003" on X11
    title: str
    app: str  # application / window class
    width: int
    height: int
    x: int
    y: int


class Source(abc.ABC):
    """One thing being captured: a display, a window or a synthetic picture."""

    id: str

    @property
    @abc.abstractmethod
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames `grab` returns."""

    @abc.abstractmethod
    def grab(self) -> Frame:
        """The current picture as BGRA. A window that is gone yields black (see `gone`)."""

    def changed(self) -> bool:
        """False only when the source knows its picture is what the last `grab` returned
        (the server reported no change there); a caller may then skip the grab."""
        return True

    @property
    def changed_box(self) -> Box | None:
        """Where the frame the last `grab` returned can differ from the frame of the grab
        before it (outside, every pixel is the same); None when unknown: anywhere."""
        return None

    def show_at(self, width: int, height: int) -> bool:
        """Give frames of `width` x `height` (smaller than `size`, its aspect) from the next
        `grab` on (`size` and `changed_box` then speak of them), scaled as the compositor
        would scale them into a cell of that size (INTER_AREA). True if the source does so;
        False (the default) if it keeps its own size, and the compositor scales it. A source
        that scales as it reads (straight out of the server's memory) never copies, compares
        or queues the picture at its own size."""
        return False

    @property
    def gone(self) -> bool:
        """True once the captured thing has disappeared (a closed window)."""
        return False

    @property
    def hidden(self) -> bool:
        """True while the captured thing is there but cannot be seen (a minimised window):
        `grab` gives its last picture meanwhile."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the platform resources; safe to call twice."""


class CaptureBackend(abc.ABC):
    """What a platform can capture."""

    @abc.abstractmethod
    def displays(self) -> list[DisplayInfo]: ...

    @abc.abstractmethod
    def windows(self) -> list[WindowInfo]: ...

    @abc.abstractmethod
    def open(self, source_id: str) -> Source:
        """Open a validated source id; raises InvalidInput for one that does not exist."""

    @abc.abstractmethod
    def screenshot(self, source_id: str | None = None) -> Frame:
        """One BGRA picture of one display, or of all displays together when None."""

    def focused_window(self) -> tuple[str, str] | None:
        """(application, title) of the window in front, if the platform can tell; cheap
        enough to ask once a second. An excluded window is ("", rules.EXCLUDED_TITLE)."""
        return None

    def exclude(self, patterns: Sequence[str]) -> None:
        """From now on, black out in every picture this back end gives the windows whose
        title or application matches one of `patterns` (checked by
        `rules.check_exclusions`), and never name them in `focused_window`.

        A platform that cannot do this refuses, so nothing is recorded unmasked.
        """
        if patterns:
            raise CaptureError("window exclusions are not available on this platform")

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the platform connection; safe to call twice."""
