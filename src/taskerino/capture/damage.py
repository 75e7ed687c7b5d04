"""What changed on an X11 screen, as the server reports it (the DAMAGE extension).

Grabbing and comparing a 1080p screen costs a few milliseconds a tick even when nothing
moves. The server knows what it drew: a damage object on the root window reports each
newly changed rectangle of the screen, windows included, and nothing for cursor moves.
A source asks `changed` before it grabs; a still screen then costs one non-blocking
socket read a tick. Where the extension is missing (or `TASKERINO_CAPTURE=poll`), there
is no watch and sources grab every tick as before.

Order matters for not missing a change: events are drained and the server's region
cleared *before* the grab, so whatever changes after the clear is reported again, and
a change that lands between the clear and the grab only costs one extra grab.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field

from Xlib import X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import damage as xdamage

log = logging.getLogger(__name__)

Rect = tuple[int, int, int, int]  # x, y, width, height on the root window

CAPTURE_MODE_ENV = "TASKERINO_CAPTURE"  # "poll" turns change reports off


@dataclass
class ChangeListener:
    """The changes inside one area of the screen since its owner last took them."""

    area: Rect
    dirty: Rect | None = None  # bounding box of the changes, in the area's coordinates
    pending: bool = field(default=True)  # nothing taken yet: the first grab is whole

    def add(self, rect: Rect) -> None:
        ax, ay, aw, ah = self.area
        x0, y0 = max(rect[0], ax), max(rect[1], ay)
        x1, y1 = min(rect[0] + rect[2], ax + aw), min(rect[1] + rect[3], ay + ah)
        if x1 <= x0 or y1 <= y0:
            return  # elsewhere on the screen
        box = (x0 - ax, y0 - ay, x1 - x0, y1 - y0)
        self.dirty = box if self.dirty is None else _union(self.dirty, box)

    def take(self) -> tuple[bool, Rect | None]:
        """(whole, box): grab all of the area, or only `box` of it (None: nothing changed)."""
        whole, box = self.pending, self.dirty
        self.pending, self.dirty = False, None
        return whole, box


class DamageWatch:
    """One connection that hears the server's change reports for the whole screen."""

    def __init__(self, display_name: str) -> None:
        self._display = xdisplay.Display(display_name)
        try:
            if not self._display.has_extension("DAMAGE"):
                raise LookupError("the X server has no DAMAGE extension")
            self._display.damage_query_version()  # the server wants the version first
            # python-xlib registers a copy of the event class: compare codes, not classes.
            extension = self._display.query_extension("DAMAGE")
            if extension is None:
                raise LookupError("the X server has no DAMAGE extension")
            self._notify = extension.first_event + xdamage.DamageNotifyCode
            root = self._display.screen().root
            self._damage = root.damage_create(xdamage.DamageReportDeltaRectangles)
            self._display.flush()
        except BaseException:
            self._display.close()
            raise
        self._listeners: list[ChangeListener] = []
        self._lock = threading.Lock()
        self.events = 0  # change reports read, for tests and stats

    @classmethod
    def open(cls, display_name: str) -> DamageWatch | None:
        """A watch, or None where change reports are not to be had (grab every tick)."""
        if os.environ.get(CAPTURE_MODE_ENV, "").strip().lower() == "poll":
            return None
        try:
            return cls(display_name)
        except (LookupError, xerror.XError, OSError, ConnectionError) as e:
            log.info("change reports are off (%s): every tick grabs the screen", e)
            return None

    def listen(self, area: Rect) -> ChangeListener:
        listener = ChangeListener(area)
        with self._lock:
            self._listeners.append(listener)
        return listener

    def forget(self, listener: ChangeListener) -> int:
        """Stop handing changes to `listener`; how many listeners are left."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            return len(self._listeners)

    def poll(self) -> None:
        """Hand every change reported so far to the listeners whose area it touches."""
        with self._lock:
            d = self._display
            seen = False
            while d.pending_events():
                event = d.next_event()
                if event.type != self._notify:
                    continue
                seen = True
                self.events += 1
                area = event.area
                rect = (int(area.x), int(area.y), int(area.width), int(area.height))
                for listener in self._listeners:
                    listener.add(rect)
            if seen:
                # Clear the server's region: the next change is reported anew.
                d.damage_subtract(self._damage, X.NONE, X.NONE)
                d.flush()

    def close(self) -> None:
        # A server already gone has nothing left to release.
        with self._lock, contextlib.suppress(xerror.XError, OSError, ConnectionError):
            self._display.damage_destroy(self._damage)
            self._display.close()


def _union(a: Rect, b: Rect) -> Rect:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0
