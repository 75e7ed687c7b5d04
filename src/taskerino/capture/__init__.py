"""Screen capture behind platform-neutral interfaces.

`get_backend()` picks the back end for the running platform: X11 (mss and python-xlib) on
Linux and other X desktops. macOS (ScreenCaptureKit via pyobjc) and Windows (Windows
Graphics Capture) are planned behind the same `CaptureBackend` interface.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..errors import CaptureError
from ..frame import Frame
from ..rules import TEST_SOURCE_PREFIX, is_test_source
from .base import CaptureBackend, DisplayInfo, Source, WindowInfo
from .ids import SourceId, parse_source_id, validate_sources

__all__ = [
    "CaptureBackend",
    "DisplayInfo",
    "Frame",
    "Source",
    "SourceId",
    "WindowInfo",
    "get_backend",
    "open_source",
    "parse_source_id",
    "validate_sources",
]

_PLANNED = {
    "darwin": "macOS (ScreenCaptureKit via pyobjc)",
    "win32": "Windows (Windows Graphics Capture)",
}


def get_backend(display: str | None = None) -> CaptureBackend:
    """The capture back end for this platform; `display` is an X display name like ":0"."""
    planned = next(
        (what for prefix, what in _PLANNED.items() if sys.platform.startswith(prefix)), None
    )
    if planned is not None:
        raise CaptureError(
            f"screen capture on {planned} is planned but not available in "
            "this version; Taskerino captures on X11 (Linux) only"
        )
    name = display or os.environ.get("DISPLAY")
    if not name:
        hint = " (on Wayland, run under XWayland)" if os.environ.get("WAYLAND_DISPLAY") else ""
        raise CaptureError(
            "no X display: set DISPLAY (e.g. DISPLAY=:0) to the X server to "
            f"capture{hint}, or record only test:NAME sources and audio"
        )
    from .x11 import X11Backend  # lazily: mss and Xlib are needed only here

    return X11Backend(name)


def open_source(source_id: str, backend: Callable[[], CaptureBackend]) -> Source:
    """Open a validated source id. `test:` sources are synthetic: this is the one place
    that tells them apart, so they never need a screen (`backend` is not called)."""
    if is_test_source(source_id):
        from .synthetic import TestPatternSource

        return TestPatternSource(source_id[len(TEST_SOURCE_PREFIX) :])
    return backend().open(source_id)
