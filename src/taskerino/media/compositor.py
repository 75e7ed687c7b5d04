"""Compose up to four BGRA sources into one output picture (spec §3 "Video").

Every source is letterboxed into its cell keeping its aspect ratio, with black bars.
The layout (one slot per source) is computed once; the picture rectangle inside a slot
is recomputed only when that source's frame size changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from taskerino.errors import InvalidInput
from taskerino.frame import Frame, FramePool
from taskerino.rules import check_compositor, check_size

Rect = tuple[int, int, int, int]  # x, y, w, h

# Output buffers kept: the video's queue of composed frames and the one being encoded
# hold the usual few.
POOLED_OUTPUTS = 4


def fit(src_w: int, src_h: int, slot: Rect) -> Rect:
    """The largest rectangle of the source's aspect that fits in `slot`, centred."""
    x, y, w, h = slot
    scale = min(w / src_w, h / src_h)
    fw = max(1, min(w, round(src_w * scale)))
    fh = max(1, min(h, round(src_h * scale)))
    return x + (w - fw) // 2, y + (h - fh) // 2, fw, fh


def layout(kind: str, n: int, width: int, height: int) -> list[Rect]:
    """The slot of each source; an incomplete last grid row is centred."""
    if kind == "passthrough":
        return [(0, 0, width, height)]
    cols = n if kind == "side-by-side" else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cw, ch = width // cols, height // rows
    slots: list[Rect] = []
    for i in range(n):
        row, col = divmod(i, cols)
        in_row = min(cols, n - row * cols)
        x0 = (width - in_row * cw) // 2  # centres a short last row, 0 for a full one
        slots.append((x0 + col * cw, row * ch, cw, ch))
    return slots


class Compositor:
    """Turns one frame per source into one (height, width, 4) BGRA picture.

    `compose` returns an array nobody else holds (bars are zero: black, alpha 0), so the
    result can be handed to another thread: a buffer of a `FramePool`, reused only once
    every earlier result in it was dropped (a fresh 8 MB array a frame is what the C heap
    keeps, see `taskerino.heap`). With `ring=k` (k >= 2) it instead cycles through k
    preallocated buffers; the caller must then hold at most k-1 composed frames at any
    time. A passthrough source that already has the output size is returned as is,
    without a copy.
    """

    def __init__(self, kind: str, n_sources: int, width: int, height: int, ring: int = 0) -> None:
        check_compositor(kind, n_sources)  # the rule book: raises InvalidInput
        check_size(width, height)
        if ring == 1 or ring < 0:
            raise InvalidInput(f"ring {ring}; allowed: 0 (fresh output) or at least 2")
        self.kind = kind
        self.n_sources = n_sources
        self.width = width
        self.height = height
        self.slots = layout(kind, n_sources, width, height)
        # Picture area of each source; the whole slot until its first frame arrives.
        self.cells: list[Rect] = list(self.slots)
        self._sizes: list[tuple[int, int] | None] = [None] * n_sources
        # Slots that cover the whole picture (a full grid, side by side, passthrough): an
        # output from the pool needs no zeroing first, only the slots a picture does not
        # fill; otherwise the bars between the slots are zeroed too.
        self._tiled = sum(w * h for _, _, w, h in self.slots) == width * height
        self._pool = FramePool(POOLED_OUTPUTS)
        self._ring = [np.zeros((height, width, 4), np.uint8) for _ in range(ring)]
        self._drawn: list[list[Rect | None]] = [[None] * n_sources for _ in range(ring)]
        self._next = 0

    def compose(self, frames: Sequence[Frame | None]) -> Frame:
        if len(frames) != self.n_sources:
            raise InvalidInput(f"expected {self.n_sources} frames, got {len(frames)}")
        if self.kind == "passthrough":
            only = frames[0]
            if only is not None and only.shape[:2] == (self.height, self.width):
                self._update_cell(0, only)
                return only
        out, drawn = self._output()
        blank = drawn is None and self._tiled  # uninitialised: every pixel must be written
        for i, frame in enumerate(frames):
            rect = None if frame is None else self._update_cell(i, frame)
            if blank and rect != self.slots[i]:
                sx, sy, sw, sh = self.slots[i]
                out[sy : sy + sh, sx : sx + sw] = 0
            if drawn is not None:
                # A reused buffer holds its last picture: blank a slot whose area changed.
                if drawn[i] is not None and drawn[i] != rect:
                    sx, sy, sw, sh = self.slots[i]
                    out[sy : sy + sh, sx : sx + sw] = 0
                drawn[i] = rect
            if frame is None or rect is None:
                continue
            x, y, w, h = rect
            view = out[y : y + h, x : x + w]
            if (w, h) == (frame.shape[1], frame.shape[0]):
                np.copyto(view, frame)
            else:
                cv2.resize(frame, (w, h), dst=view, interpolation=cv2.INTER_AREA)
        return out

    def _update_cell(self, i: int, frame: Frame) -> Rect:
        size = (frame.shape[1], frame.shape[0])
        if self._sizes[i] != size:
            if frame.ndim != 3 or frame.shape[2] != 4 or frame.dtype != np.uint8:
                raise InvalidInput(f"source {i}: frames must be BGRA uint8, got {frame.shape}")
            self.cells[i] = fit(size[0], size[1], self.slots[i])
            self._sizes[i] = size
        return self.cells[i]

    def _output(self) -> tuple[Frame, list[Rect | None] | None]:
        if not self._ring:
            out = self._pool.take(self.height, self.width)
            if not self._tiled:
                out[:] = 0
            return out, None
        k = self._next
        self._next = (k + 1) % len(self._ring)
        return self._ring[k], self._drawn[k]
