"""`test:NAME` sources: synthetic pictures for demos, tests and benchmarks.

The background colour comes from the name (`red`, `blue`, ... or a stable hash of any other
name); a bar sweeps across with time and a frame counter changes on every grab, so
consecutive frames differ. A name starting with `still-` gives a picture that never changes
(for variable-frame-rate tests); `test:still-red` is red.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import cv2
import numpy as np

from ..errors import InvalidInput
from ..frame import Frame
from .base import Source

# BGR, the channel order of the frames.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (0, 0, 255),
    "green": (0, 255, 0),
    "blue": (255, 0, 0),
    "yellow": (0, 255, 255),
    "cyan": (255, 255, 0),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
STILL_PREFIX = "still-"
SWEEP_SECONDS = 4.0  # the bar crosses the picture once in this time


def colour_for(name: str) -> tuple[int, int, int]:
    """The BGR background colour for a test name (without the `still-` prefix)."""
    known = COLOURS.get(name.lower())
    if known is not None:
        return known
    # hashlib, not hash(): the colour must be the same in every process.
    b, g, r = hashlib.sha256(name.encode()).digest()[:3]
    return (b, g, r)


class TestPatternSource(Source):
    """A deterministic synthetic BGRA picture of `width` x `height`."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        name: str,
        width: int = 1280,
        height: int = 720,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if width < 16 or height < 16:
            raise InvalidInput(
                f"test picture size {width}x{height} is too small; both sides must be at least 16"
            )
        self.id = f"test:{name}"
        self.name = name
        self.still = name.startswith(STILL_PREFIX)
        base = name[len(STILL_PREFIX) :] if self.still else name
        self.colour = colour_for(base or name)
        self._width, self._height = width, height
        self._clock = clock
        self._start = clock()
        self._count = 0
        self._background = np.empty((height, width, 4), np.uint8)
        self._background[:] = (*self.colour, 255)
        # Contrasting colour for the bar and text: per channel, far from the background.
        self._ink = (*(0 if c >= 128 else 255 for c in self.colour), 255)
        self._bar = max(4, width // 16)
        self._scale = height / 360
        if self.still:
            cv2.putText(
                self._background,
                name,
                (width // 20, height // 2),
                cv2.FONT_HERSHEY_SIMPLEX,
                self._scale,
                self._ink,
                max(1, round(2 * self._scale)),
                cv2.LINE_AA,
            )

    @property
    def size(self) -> tuple[int, int]:
        return (self._width, self._height)

    def grab(self) -> Frame:
        # A fresh array each time: callers may queue frames, so no buffer is handed out twice.
        frame = self._background.copy()
        if self.still:
            return frame
        self._count += 1
        phase = ((self._clock() - self._start) / SWEEP_SECONDS) % 1.0
        x = int(phase * (self._width - self._bar))
        frame[:, x : x + self._bar] = self._ink
        cv2.putText(
            frame,
            f"{self.name} #{self._count}",
            (self._width // 40, self._height // 8),
            cv2.FONT_HERSHEY_SIMPLEX,
            self._scale,
            self._ink,
            max(1, round(2 * self._scale)),
            cv2.LINE_AA,
        )
        return frame
