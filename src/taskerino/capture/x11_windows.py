"""Where the windows to keep out of a recording are, on X11, followed through X events.

`WindowTracker` watches the top-level windows (the root's children) on a connection of
its own: it is told by the server when one is created, mapped, moved, resized, renamed or
destroyed, so a still desktop costs two round trips a picture and nothing more.

A picture is safe when it is masked with every place an excluded window took between the
moment before it was grabbed and the moment after: `token()` before the grab,
`hidden_since(token)` after it. Both make a round trip first, and the server
sends a client every event it generated before it answers its request, so a window that
appeared, moved or was renamed before the pixels were read is known by then. Places from
both ends of the interval are kept: a window dragged during the grab is covered wherever
its pixels were.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from Xlib import X
from Xlib import display as xdisplay
from Xlib import error as xerror

from ..errors import CaptureError

Rect = tuple[int, int, int, int]  # x, y, width, height on the root, border included
Matcher = Callable[[Iterable[str]], bool]

# States kept for pictures being grabbed; a grab that spans more changes than this is
# masked whole (never seen: a grab takes milliseconds, a change is an X event).
HISTORY = 512
_CONNECTION_ERRORS = (xerror.ConnectionClosedError, xerror.DisplayError, OSError)
_SELECTED = X.PropertyChangeMask | X.SubstructureNotifyMask


def _ignore(*_: object) -> None:
    """Errors of requests without replies (a window vanished while we looked): the next
    round trip tells what matters."""


@dataclass
class _TopLevel:
    rect: Rect
    mapped: bool
    client: int  # the window that carries the title: itself, or a child in a frame
    matched: bool = False  # its own names match
    transient_for: int = 0  # the window it is a dialog of (WM_TRANSIENT_FOR)
    excluded: bool = False  # matched, or a dialog of an excluded window


@dataclass(frozen=True)
class Hidden:
    """What to black out: areas on the root, and windows (top-level or client ids) whose
    own pictures must not be shown. `everything` when the state could not be told."""

    rects: frozenset[Rect]
    windows: frozenset[int]
    everything: bool = False


class WindowTracker:
    """Top-level windows whose title or application name `matches`, and where they are."""

    def __init__(self, display_name: str, matches: Matcher) -> None:
        self._matches = matches
        self._lock = threading.Lock()
        try:
            self._d = xdisplay.Display(display_name)
        except (*_CONNECTION_ERRORS, xerror.XauthError, xerror.XNoAuthError) as e:
            raise CaptureError(f"cannot connect to X display {display_name}: {e}") from e
        self._d.set_error_handler(_ignore)
        self._root = self._d.screen().root
        self._name_atoms = {
            self._d.get_atom(name)
            for name in ("WM_NAME", "_NET_WM_NAME", "WM_CLASS", "WM_TRANSIENT_FOR")
        }
        self._utf8 = self._d.get_atom("UTF8_STRING")
        self._net_name = self._d.get_atom("_NET_WM_NAME")
        self._tops: dict[int, _TopLevel] = {}
        self._epoch = 0
        self._history: collections.deque[tuple[int, Hidden]] = collections.deque(maxlen=HISTORY)
        try:
            # Listen first, then look: nothing that happens in between is missed.
            self._root.change_attributes(event_mask=X.SubstructureNotifyMask)
            for child in self._root.query_tree().children:
                self._add(child.id)
            self._record()
        except _CONNECTION_ERRORS as e:
            self.close()
            raise CaptureError(f"lost the X display {display_name}: {e}") from e

    def close(self) -> None:
        with contextlib.suppress(*_CONNECTION_ERRORS):
            self._d.close()

    # --- what callers ask -------------------------------------------------------------
    def token(self) -> int:
        """Take before grabbing; pass to `hidden_since` after. Takes in every event so
        far first (a round trip), so that the interval holds only the grab's own: a
        long drag between two screenshots minutes apart is not theirs."""
        with self._lock:
            try:
                self._drain()
            except _CONNECTION_ERRORS as e:
                raise CaptureError(f"lost the X display while following windows: {e}") from e
            return self._epoch

    def hidden_since(self, token: int) -> Hidden:
        """Every place and window excluded at any moment from `token` until now."""
        with self._lock:
            try:
                self._drain()
            except _CONNECTION_ERRORS as e:
                raise CaptureError(f"lost the X display while following windows: {e}") from e
            if not self._history or self._history[0][0] > token:
                return Hidden(frozenset(), frozenset(), everything=True)
            rects: set[Rect] = set()
            windows: set[int] = set()
            for epoch, hidden in self._history:
                if epoch >= token:
                    rects |= hidden.rects
                    windows |= hidden.windows
            return Hidden(frozenset(rects), frozenset(windows))

    def excluded_rects(self) -> list[Rect]:
        """Where excluded windows are now (for tests and benchmarks)."""
        with self._lock:
            try:
                self._drain()
            except _CONNECTION_ERRORS as e:
                raise CaptureError(f"lost the X display while following windows: {e}") from e
            return sorted(self._history[-1][1].rects)

    # --- following the server ----------------------------------------------------------
    def _drain(self) -> None:
        self._d.sync()  # every event generated before now is in the queue after this
        while self._d.pending_events():
            # Each state is kept, not just the last: a window mapped then renamed was
            # visible under its first name in between.
            if self._handle(self._d.next_event()):
                self._record()

    def _handle(self, e: Any) -> bool:
        kind, root = e.type, self._root.id
        if kind == X.ConfigureNotify:
            top = self._tops.get(e.window.id)
            if top is None or e.event.id != root:
                return False
            bw = 2 * e.border_width
            top.rect = (e.x, e.y, e.width + bw, e.height + bw)
            return top.excluded
        if kind in (X.MapNotify, X.UnmapNotify):
            top = self._tops.get(e.window.id)
            if top is None:
                return False
            top.mapped = kind == X.MapNotify
            return top.excluded
        if kind == X.PropertyNotify:
            if e.atom not in self._name_atoms:
                return False
            wid = e.window.id
            owner = next((t for t, top in self._tops.items() if wid in (t, top.client)), None)
            return owner is not None and self._refresh(owner)
        if kind == X.CreateNotify:
            return e.parent.id == root and self._add(e.window.id)
        if kind == X.DestroyNotify:
            wid = e.window.id
            if wid in self._tops:
                return self._tops.pop(wid).excluded
            owner = next((t for t, top in self._tops.items() if top.client == wid), None)
            return owner is not None and self._refresh(owner)
        if kind == X.ReparentNotify:
            wid = e.window.id
            if e.event.id == root:  # a window joined or left the root's children
                if e.parent.id == root:
                    return self._add(wid)
                top = self._tops.pop(wid, None)
                return top is not None and top.excluded
            # A window manager put a client into one of its frames: the frame's name changes.
            return e.event.id in self._tops and self._refresh(e.event.id)
        return False

    def _add(self, wid: int) -> bool:
        """Start following a top-level window; True when it is an excluded one."""
        window = self._d.create_resource_object("window", wid)
        try:
            window.change_attributes(event_mask=_SELECTED, onerror=_ignore)
            attrs = window.get_attributes()
            geom = window.get_geometry()
        except xerror.XError:
            return False  # gone already: its DestroyNotify follows
        bw = 2 * geom.border_width
        top = _TopLevel(
            rect=(geom.x, geom.y, geom.width + bw, geom.height + bw),
            mapped=attrs.map_state != X.IsUnmapped,
            client=wid,
        )
        self._tops[wid] = top
        self._refresh(wid)
        return top.excluded

    def _refresh(self, wid: int) -> bool:
        """Read the names of a top-level window again; True when its exclusion changed
        or it is excluded."""
        top = self._tops[wid]
        before = top.excluded
        try:
            top.client = self._client_of(wid)
            client = self._d.create_resource_object("window", top.client)
            top.matched = self._matches(self._names(top.client))
            owner = client.get_wm_transient_for()
            top.transient_for = 0 if owner is None else int(owner.id)
        except xerror.XError:
            pass  # destroyed: its DestroyNotify follows
        return self._settle() or before or top.excluded

    def _settle(self) -> bool:
        """Which windows are excluded: those whose names match, and the dialogs of an
        excluded window (WM_TRANSIENT_FOR: "Unlock database" of a matching password
        manager), through chains of them. True when any changed."""
        owner_of = {w: t for t, top in self._tops.items() for w in (t, top.client)}
        excluded = {t for t, top in self._tops.items() if top.matched}
        grew = True
        while grew:
            grew = False
            for t, top in self._tops.items():
                if t not in excluded and owner_of.get(top.transient_for) in excluded:
                    excluded.add(t)
                    grew = True
        changed = False
        for t, top in self._tops.items():
            if top.excluded != (t in excluded):
                top.excluded = t in excluded
                changed = True
        return changed

    def _client_of(self, wid: int) -> int:
        """The window that names a top-level one: itself, or (in a window manager's frame)
        the first child that has a name or a class."""
        window = self._d.create_resource_object("window", wid)
        if any(self._names(wid)):
            return wid
        for child in window.query_tree().children:
            if any(self._names(child.id)):
                child.change_attributes(event_mask=X.PropertyChangeMask, onerror=_ignore)
                return int(child.id)
        return wid

    def _names(self, wid: int) -> list[str]:
        """Title and application names (WM_CLASS instance and class) of a window."""
        window = self._d.create_resource_object("window", wid)
        title = window.get_full_text_property(self._net_name, self._utf8) or window.get_wm_name()
        wm_class = window.get_wm_class() or ()
        return [str(title or ""), *wm_class]

    def _record(self) -> None:
        excluded = [(t, top) for t, top in self._tops.items() if top.excluded]
        self._epoch += 1
        hidden = Hidden(
            rects=frozenset(top.rect for _, top in excluded if top.mapped),
            windows=frozenset(w for t, top in excluded for w in (t, top.client)),
        )
        self._history.append((self._epoch, hidden))


def black_out(frame: Any, left: int, top: int, rects: Iterable[Rect], shrink: int = 1) -> None:
    """Black out, in place, the parts of `rects` (root coordinates) inside `frame`, whose
    top-left pixel is at (`left`, `top`) on the root. In a frame shrunk `shrink` times,
    every pixel that a rectangle's pixels went into is blacked out (the edges round out)."""
    height, width = frame.shape[:2]
    k = shrink
    for x, y, w, h in rects:
        x0, y0 = max((x - left) // k, 0), max((y - top) // k, 0)
        x1, y1 = min(-(-(x + w - left) // k), width), min(-(-(y + h - top) // k), height)
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = 0
