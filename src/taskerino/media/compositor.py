"""Compose up to four BGRA sources into one output picture (spec §3 "Video").

Every source is letterboxed into its cell keeping its aspect ratio, with black bars.
The layout (one slot per source) is computed once; the picture rectangle inside a slot
is recomputed only when that source's frame size changes. Where a source says which part
of its frame changed (its box), only that part of its cell is drawn again when the cell
maps whole pixels onto whole pixels (the same size, or a whole-number downscale: a
1080p display in a 540p cell); the picture's own changed box follows from those.
"""

from __future__ import annotations

import collections
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from taskerino.errors import InvalidInput
from taskerino.frame import NO_CHANGE, Box, Frame, cell_part, union_box
from taskerino.rules import check_compositor, check_size

Rect = tuple[int, int, int, int]  # x, y, w, h


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


# What a buffer's slot shows: the picture's rectangle (None: nothing) and the serial of the
# source frame drawn there.
Shown = tuple[Rect | None, int]
FREE_BUFFERS = 2  # outputs given back and kept for reuse; more are left to the allocator
BOX_HISTORY = 8  # each source's last boxes, to bring a buffer that is a few frames behind


@dataclass
class _Issued:
    """An output the caller holds: drawn over only once every hand-out is given back."""

    ref: weakref.ReferenceType[Frame]
    drawn: list[Shown | None]
    count: int


class Compositor:
    """Turns one frame per source into one (height, width, 4) BGRA picture.

    `compose` returns an output nobody else writes to, so it can be handed to another
    thread (bars are zero: black, alpha 0). The caller may give an output back with
    `release` once it is done with it (any thread): a later `compose` then draws into it
    again, redrawing only the slots whose source changed. An output that is never given
    back is simply left to the garbage collector. With `ring=k` (k >= 2) it instead cycles
    through k preallocated buffers; the caller must then hold at most k-1 composed frames
    at any time. A passthrough source that already has the output size is returned as is,
    without a copy.

    A source whose frame is the very object it gave last time (the capture layer hands
    back an unchanged source's last frame) is not scaled again: its slot is copied from
    the last output, or left as it is in a buffer that already shows it; when no source
    changed at all, the last output itself is returned again. This holds only while a
    frame's pixels never change once given, so `compose` makes every frame it gets
    read-only, and its outputs too (a write to either raises instead of going stale).

    `compose` may be told, per source, where its frame differs from the frame it gave
    before (a box, as capture reports it; None: anywhere). Then only that part of a cell
    is scaled again, and `changed_box` tells where the returned picture differs from the
    one returned before it, for the encoder to convert only that.
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
        # Slots that cover the whole picture (a full grid, side by side, passthrough): a fresh
        # output needs no zeroing first, only the slots a picture does not fill. A zeroed
        # 8 MB array costs a page fault per 4 KB page on every frame; an uninitialised one
        # reuses memory the allocator just got back.
        self._tiled = sum(w * h for _, _, w, h in self.slots) == width * height
        self._ring = [np.zeros((height, width, 4), np.uint8) for _ in range(ring)]
        self._ring_drawn: list[list[Shown | None]] = [[None] * n_sources for _ in range(ring)]
        self._next = 0
        # The last call's frames and output; a serial per slot that changes with the frame
        # object, so a buffer can tell what it shows without keeping old frames alive.
        self._shown: list[Frame | None] = [None] * n_sources
        self._serials = [0] * n_sources
        self._last: Frame | None = None
        # Per source, the box of each recent serial (where its frame differed from the one
        # before; None: anywhere or another size).
        self._boxes: list[collections.deque[tuple[int, Box | None]]] = [
            collections.deque(maxlen=BOX_HISTORY) for _ in range(n_sources)
        ]
        self.changed_box: Box | None = None
        # Outputs handed out (by id, checked by a weak reference: an id can be reused once
        # the array is gone), those given back (by any thread) and those ready for reuse.
        self._issued: dict[int, _Issued] = {}
        self._returned: collections.deque[Frame] = collections.deque()
        self._free: list[tuple[Frame, list[Shown | None]]] = []

    def release(self, output: Frame) -> None:
        """The caller is done with `output` (from `compose`): it may be drawn over. Safe
        from any thread; anything `compose` did not make (a passthrough source) is ignored.
        An output handed out twice (nothing had changed) is reused once both are back."""
        self._returned.append(output)

    def compose(
        self, frames: Sequence[Frame | None], boxes: Sequence[Box | None] | None = None
    ) -> Frame:
        """The picture of `frames` (one per source, None: nothing to show). `boxes`: where
        each frame can differ from the one that source gave to the call before (None, or
        no `boxes`: anywhere); a wrong box leaves old pixels in the picture. Sets
        `changed_box`."""
        if len(frames) != self.n_sources:
            raise InvalidInput(f"expected {self.n_sources} frames, got {len(frames)}")
        for frame in frames:
            if frame is not None:
                frame.flags.writeable = False  # kept and reused: it must not change now
        self._take_back()
        last, shown = self._last, self._shown
        if last is not None and all(f is s for f, s in zip(frames, shown, strict=True)):
            issued = self._issued.get(id(last))
            if issued is not None:
                issued.count += 1
            elif not self._ring and any(buffer is last for buffer, _ in self._free):
                # Given back, not drawn over yet: hand it out again.
                k = next(k for k, (buffer, _) in enumerate(self._free) if buffer is last)
                self._issue(last, self._free.pop(k)[1])
            self.changed_box = NO_CHANGE
            return last  # nothing changed: the same picture, the same object
        before = list(self.cells)
        for i, frame in enumerate(frames):
            if frame is not shown[i]:
                self._serials[i] += 1
                old = shown[i]
                same_size = frame is not None and old is not None and old.shape == frame.shape
                box = boxes[i] if boxes is not None and same_size else None
                self._boxes[i].append((self._serials[i], box))
        if self.kind == "passthrough":
            only = frames[0]
            if only is not None and only.shape[:2] == (self.height, self.width):
                self._update_cell(0, only)
                self._shown, self._last = list(frames), only
                self.changed_box = self._boxes[0][-1][1] if last is not None else None
                return only
        out, drawn, fresh = self._output()
        changed: Box | None = NO_CHANGE
        for i, frame in enumerate(frames):
            rect = None if frame is None else self._update_cell(i, frame)
            if frame is not shown[i]:  # what differs from the last picture
                step = self._part(i, frame, rect, self._serials[i] - 1, before[i])
                changed = union_box(changed, None if step is None else step[0])
            state = (rect, self._serials[i])
            had = drawn[i]
            if had == state:
                continue  # this buffer already shows this very frame
            drawn[i] = state
            # What this buffer must draw again: the part that changed since it was drawn.
            part = None
            if had is not None and had[0] is not None:
                part = self._part(i, frame, rect, had[1], had[0])
            sx, sy, sw, sh = self.slots[i]
            if last is not None and last is not out and frame is not None and frame is shown[i]:
                # Unchanged since the last picture: copy from it (bars included).
                px, py, pw, ph = self.slots[i] if part is None else part[0]
                np.copyto(out[py : py + ph, px : px + pw], last[py : py + ph, px : px + pw])
                continue
            if frame is None or rect is None:
                out[sy : sy + sh, sx : sx + sw] = 0  # an empty slot
                continue
            if part is not None:
                (px, py, pw, ph), (fx, fy, fw, fh) = part
                if pw and ph:
                    self._draw(frame[fy : fy + fh, fx : fx + fw], out[py : py + ph, px : px + pw])
                continue
            # A fresh tiled output is uninitialised, a reused one holds its old picture.
            if rect != self.slots[i] and (self._tiled or not fresh):
                out[sy : sy + sh, sx : sx + sw] = 0  # bars
            x, y, w, h = rect
            self._draw(frame, out[y : y + h, x : x + w])
        out.flags.writeable = False
        if not self._ring:
            self._issue(out, drawn)
        self._shown, self._last = list(frames), out
        self.changed_box = None if last is None else changed
        return out

    @staticmethod
    def _draw(frame: Frame, view: Frame) -> None:
        if view.shape == frame.shape:
            np.copyto(view, frame)
        else:
            cv2.resize(
                frame, (view.shape[1], view.shape[0]), dst=view, interpolation=cv2.INTER_AREA
            )

    def _part(
        self, i: int, frame: Frame | None, rect: Rect | None, since: int, drawn_rect: Rect | None
    ) -> tuple[Rect, Box] | None:
        """The part of source `i`'s slot that differs between its frame of serial `since`
        (drawn in `drawn_rect`) and now, with the part of the frame to draw there; None:
        the whole slot."""
        if frame is None or rect is None or rect != drawn_rect:
            return None
        box: Box | None = NO_CHANGE
        found = since
        for serial, step in self._boxes[i]:
            if serial > since:
                if serial != found + 1:
                    return None  # a step older than the history
                box, found = union_box(box, step), serial
        if found != self._serials[i] or box is None:
            return None
        return cell_part(box, (frame.shape[1], frame.shape[0]), rect)

    def _update_cell(self, i: int, frame: Frame) -> Rect:
        size = (frame.shape[1], frame.shape[0])
        if self._sizes[i] != size:
            if frame.ndim != 3 or frame.shape[2] != 4 or frame.dtype != np.uint8:
                raise InvalidInput(f"source {i}: frames must be BGRA uint8, got {frame.shape}")
            self.cells[i] = fit(size[0], size[1], self.slots[i])
            self._sizes[i] = size
        return self.cells[i]

    def _issue(self, out: Frame, drawn: list[Shown | None]) -> None:
        self._issued[id(out)] = _Issued(weakref.ref(out), drawn, 1)

    def _take_back(self) -> None:
        while self._returned:
            output = self._returned.popleft()
            issued = self._issued.get(id(output))
            if issued is None or issued.ref() is not output:
                continue  # not ours, or given back more often than handed out
            issued.count -= 1
            if issued.count == 0:
                del self._issued[id(output)]
                if len(self._free) < FREE_BUFFERS:
                    self._free.append((output, issued.drawn))
        for key in [k for k, issued in self._issued.items() if issued.ref() is None]:
            del self._issued[key]  # dropped by the caller without a word

    def _output(self) -> tuple[Frame, list[Shown | None], bool]:
        """A buffer to draw into, what its slots show, and whether it is new."""
        if self._ring:
            k = self._next
            self._next = (k + 1) % len(self._ring)
            buffer = self._ring[k]
            buffer.flags.writeable = True  # the caller no longer holds it (the ring's contract)
            return buffer, self._ring_drawn[k], False
        if self._free:
            # The last output first: it shows the most of what is wanted now.
            k = next((k for k, (b, _) in enumerate(self._free) if b is self._last), -1)
            buffer, drawn = self._free.pop(k)
            buffer.flags.writeable = True
            return buffer, drawn, False
        make = np.empty if self._tiled else np.zeros
        return make((self.height, self.width, 4), np.uint8), [None] * self.n_sources, True
