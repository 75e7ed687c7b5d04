"""The X11 back end: mss grabs pixels (XShm), python-xlib lists monitors and windows.

Neither an mss instance nor an Xlib connection may be shared between threads, and sources
are grabbed on a capture thread other than the one that opened them, so each thread gets
its own connections, made on first use and closed with the back end.

A window source reads the window's own pixels with the Composite extension (the window is
redirected to off-screen storage and that storage is read), so what covers it is never
recorded. With exclusions (`exclude`), every picture the back end hands out has the
excluded windows blacked out before it leaves: raw pixels never reach a caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar, cast

import cv2
import mss
import numpy as np
from Xlib import X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import composite, randr
from Xlib.ext import damage as xdamage
from Xlib.protocol import request
from Xlib.xobject.drawable import Window

from ..errors import CaptureError, InvalidInput
from ..frame import NO_CHANGE, Box, Frame, cell_part, union_box
from ..rules import EXCLUDED_TITLE, exclusion_matcher
from .base import CaptureBackend, DisplayInfo, Source, WindowInfo
from .damage import CAPTURE_MODE_ENV, ChangeListener, DamageWatch
from .ids import parse_source_id, validate_sources
from .x11_pixels import DrawableReader, XcbError
from .x11_windows import Hidden, WindowTracker, black_out

T = TypeVar("T")
Region = dict[str, int]  # mss region: left, top, width, height

# Errors that mean "the X server connection is unusable", as opposed to a vanished window.
_CONNECTION_ERRORS = (xerror.ConnectionClosedError, xerror.DisplayError, OSError)


class _PerThread(Generic[T]):
    """One `T` per thread, made lazily; those of finished threads are closed on the next make."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], None]) -> None:
        self._make, self._close = make, close
        self._items: dict[threading.Thread, T] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> T:
        thread = threading.current_thread()
        with self._lock:
            item = self._items.get(thread)
            if item is not None:
                return item
            if self._closed:
                raise CaptureError("the capture back end is closed")
            for dead in [t for t in self._items if not t.is_alive()]:
                self._close(self._items.pop(dead))
            item = self._items[thread] = self._make()
            return item

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            items, self._items = list(self._items.values()), {}
        for item in items:
            self._close(item)


def black(width: int, height: int) -> Frame:
    """A black BGRA frame (alpha 0, as mss gives on a 24-bit X screen)."""
    return np.zeros((height, width, 4), np.uint8)


def fit(frame: Frame, width: int, height: int) -> Frame:
    """Scale `frame` to fit `width` x `height` keeping its aspect, centred on black."""
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    out = black(width, height)
    ox, oy = (width - nw) // 2, (height - nh) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    # Resize straight into the view: no intermediate copy.
    cv2.resize(frame, (nw, nh), dst=out[oy : oy + nh, ox : ox + nw], interpolation=interpolation)
    return out


def _distinct_monitors(monitors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop monitors that strictly contain another one.

    Xvfb with client-defined RandR monitors also lists the automatic whole-screen monitor
    (output "screen"); real desktops mark every monitor with its output, so the `output`
    key alone cannot tell the aggregate apart. A single monitor is always kept.
    """

    def rect(m: dict[str, Any]) -> tuple[int, int, int, int]:
        return int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"])

    def inside(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        return (
            b[0] <= a[0]
            and b[1] <= a[1]
            and a[0] + a[2] <= b[0] + b[2]
            and a[1] + a[3] <= b[1] + b[3]
            and a[2] * a[3] < b[2] * b[3]
        )

    rects = [rect(m) for m in monitors]
    return [m for m, r in zip(monitors, rects, strict=True) if not any(inside(o, r) for o in rects)]


class X11Backend(CaptureBackend):
    """Capture on an X11 display (`display` like ":0"; default: $DISPLAY)."""

    def __init__(self, display: str | None = None) -> None:
        name = display or os.environ.get("DISPLAY")
        if not name:
            raise CaptureError("no X display: set DISPLAY (e.g. DISPLAY=:0) or pass one")
        self.display_name = name
        self._mss: _PerThread[mss.MSS] = _PerThread(self._new_mss, lambda m: m.close())
        self._xlib: _PerThread[xdisplay.Display] = _PerThread(self._new_xlib, lambda d: d.close())
        self._readers: _PerThread[DrawableReader] = _PerThread(
            lambda: DrawableReader(self.display_name), lambda r: r.close()
        )
        self._root = 0
        # Focused window -> its top-level window, for `focused_window` (window ids are the
        # server's, the same on every thread's connection).
        self._toplevels: dict[int, int] = {}
        self._tracker: WindowTracker | None = None
        self._tracker_lock = threading.Lock()
        self._masking = False
        self._excluded: Callable[[Iterable[str]], bool] = lambda names: False
        # Change reports: False until the first display source asks, then a watch or None.
        self._watch: DamageWatch | Literal[False] | None = False
        self._watch_lock = threading.Lock()
        # Fail here, with a clear message, if the server is unreachable. mss first: a failed
        # Xlib connect leaks its sockets (ResourceWarning), a failed xcb connect does not.
        try:
            self._mss.get()
            self._root = self._xlib.get().screen().root.id
        except CaptureError:
            self.close()
            raise

    def _new_mss(self) -> mss.MSS:
        try:
            return mss.MSS(display=self.display_name)
        except mss.ScreenShotError as e:
            raise CaptureError(f"cannot connect to X display {self.display_name}: {e}") from e

    def _new_xlib(self) -> xdisplay.Display:
        try:
            return xdisplay.Display(self.display_name)
        except (*_CONNECTION_ERRORS, xerror.XauthError, xerror.XNoAuthError) as e:
            raise CaptureError(f"cannot connect to X display {self.display_name}: {e}") from e

    # Listing

    def _randr_monitors(self) -> dict[tuple[int, int, int, int], tuple[str, bool]]:
        """(x, y, w, h) -> (name, primary) from RandR 1.5; empty when unavailable."""
        d = self._xlib.get()
        if not d.has_extension("RANDR"):
            return {}
        try:
            reply = randr.get_monitors(d.screen().root, True)
            return {
                (m.x, m.y, m.width_in_pixels, m.height_in_pixels): (
                    d.get_atom_name(m.name),
                    bool(m.primary),
                )
                for m in reply.monitors
            }
        except xerror.XError:  # RandR older than 1.5: no monitor objects
            return {}

    def displays(self) -> list[DisplayInfo]:
        # A fresh mss each time: an instance caches its monitor list forever.
        try:
            with mss.MSS(display=self.display_name) as sct:
                monitors = sct.monitors
        except mss.ScreenShotError as e:
            raise CaptureError(f"cannot list monitors of {self.display_name}: {e}") from e
        chosen = _distinct_monitors(monitors[1:] or monitors[:1])
        named = self._randr_monitors()
        result = []
        for n, m in enumerate(chosen, start=1):
            key = (m["left"], m["top"], m["width"], m["height"])
            name, primary = named.get(key, (m.get("name") or m.get("output") or "", False))
            result.append(
                DisplayInfo(
                    id=f"display:{n}",
                    name=name if name and name != "screen" else f"Display {n}",
                    width=m["width"],
                    height=m["height"],
                    x=m["left"],
                    y=m["top"],
                    primary=primary or bool(m.get("is_primary")),
                )
            )
        if result and not any(d.primary for d in result):
            result[0] = dataclasses.replace(result[0], primary=True)
        return result

    def windows(self) -> list[WindowInfo]:
        d = self._xlib.get()
        root = d.screen().root
        ids: list[int] = []
        client_list = d.get_atom("_NET_CLIENT_LIST", only_if_exists=True)
        if client_list != X.NONE:
            prop = root.get_full_property(client_list, X.AnyPropertyType)
            if prop is not None:
                ids = [int(w) for w in prop.value]
        if not ids:  # no window manager: the root's mapped children are the windows
            ids = [w.id for w in root.query_tree().children]
        result = []
        for wid in ids:
            window = d.create_resource_object("window", wid)
            try:  # a window may vanish while we look at it
                attrs = window.get_attributes()
                if attrs.map_state != X.IsViewable or attrs.win_class == X.InputOnly:
                    continue
                geom = window.get_geometry()
                title = self._title(d, window)
                if not title or geom.width == 0 or geom.height == 0:
                    continue
                pos = root.translate_coords(window, 0, 0)
                wm_class = window.get_wm_class()
            except xerror.XError:
                continue
            result.append(
                WindowInfo(
                    id=f"window:{wid:#x}",
                    title=title,
                    app=wm_class[1] if wm_class else "",
                    width=geom.width,
                    height=geom.height,
                    x=pos.x,
                    y=pos.y,
                )
            )
        return result

    @staticmethod
    def _title(d: xdisplay.Display, window: Window) -> str:
        utf8 = d.get_atom("UTF8_STRING")
        name = window.get_full_text_property(d.get_atom("_NET_WM_NAME"), utf8)
        if not name:
            name = window.get_wm_name()
        return str(name or "")

    def focused_window(self) -> tuple[str, str] | None:
        """(application, title) of the window with the keyboard focus; None if none has it.

        Cheap enough to call every second: one round trip finds the focused window
        (`_NET_ACTIVE_WINDOW` when a window manager sets it, else the input focus), and
        one more reads its title and class. The top-level window of an inner focus
        window is found once by walking up the tree, then remembered.
        """
        d = self._xlib.get()
        try:
            found = _focused_window(d, self._toplevels)
        except xerror.XError:  # the window went away while we looked
            return None
        except _CONNECTION_ERRORS as e:
            raise CaptureError(f"lost the X display {self.display_name}: {e}") from e
        if found is None:
            return None
        app, title, names = found
        # An excluded window is known to have been in front, never by its names.
        return ("", EXCLUDED_TITLE) if self._excluded(names) else (app, title)

    # Exclusions

    def exclude(self, patterns: Sequence[str]) -> None:
        if not patterns:
            return
        self._excluded = exclusion_matcher(patterns)
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        self._masking = True

    def _hidden_token(self) -> int:
        if not self._masking:
            return 0
        if self._tracker is None:
            # Made at the first grab: a back end that only asks what is in front needs none
            # (and would leave the server holding events nobody reads).
            with self._tracker_lock:
                if self._tracker is None:
                    self._tracker = WindowTracker(self.display_name, self._excluded)
        return self._tracker.token()

    def _exclusion_epoch(self) -> int | None:
        """Changes whenever an excluded window appears, moves, hides or is (un)excluded
        (a round trip); None without exclusions."""
        return self._hidden_token() if self._masking else None

    def _hidden_since(self, token: int) -> Hidden | None:
        return self._tracker.hidden_since(token) if self._tracker is not None else None

    # Capture

    def grab_region(self, region: Region, into: Frame | None = None, shrink: int = 1) -> Frame:
        """BGRA pixels of a root-window rectangle (excluded windows blacked out): a view
        over mss's fresh buffer, or, given `into` (the rectangle's part of a frame), written
        into it through this thread's shared-memory reader, which allocates nothing.

        With `shrink` k > 1 (the rectangle's sides multiples of k), the picture is k times
        smaller on each side, each pixel the rounded mean of its k x k block, scaled
        straight out of the shared memory (`into`, if given, has the smaller size)."""
        token = self._hidden_token()
        if into is None and shrink > 1:
            into = np.empty((region["height"] // shrink, region["width"] // shrink, 4), np.uint8)
        if into is None:
            try:
                shot = self._mss.get().grab(region)
            except mss.ScreenShotError as e:
                raise CaptureError(f"cannot grab {region} on {self.display_name}: {e}") from e
            # mss allocates a new bytearray per grab and the array keeps it alive: no copy.
            frame = np.frombuffer(shot.raw, np.uint8).reshape(shot.height, shot.width, 4)
        else:
            # Small changes come several times a second, each of a different size: a fresh
            # buffer each time left holes in this thread's heap that the next one did not fit.
            try:
                self._readers.get().read_into(
                    self._root, region["left"], region["top"], into, shrink
                )
            except XcbError as e:
                raise CaptureError(f"cannot grab {region} on {self.display_name}: {e}") from e
            frame = into
        hidden = self._hidden_since(token)
        if hidden is not None:
            if hidden.everything:
                frame[:] = 0
            else:
                black_out(frame, region["left"], region["top"], hidden.rects, shrink)
        return frame

    def screen_size(self) -> tuple[int, int]:
        root = self._mss.get().monitors[0]
        return int(root["width"]), int(root["height"])

    def window_rect(self, wid: int) -> tuple[int, int, int, int] | None:
        """(x, y, width, height) on the root, None if unmapped; XError if destroyed."""
        d = self._xlib.get()
        window = d.create_resource_object("window", wid)
        if window.get_attributes().map_state != X.IsViewable:
            return None
        geom = window.get_geometry()
        pos = d.screen().root.translate_coords(window, 0, 0)
        return pos.x, pos.y, geom.width, geom.height

    def open(self, source_id: str) -> Source:
        canonical = validate_sources([source_id], self)[0]
        sid = parse_source_id(canonical)
        if sid.kind == "test":
            raise InvalidInput(f"{canonical} is synthetic: open it with capture.open_source")
        if sid.kind == "display":
            info = next(d for d in self.displays() if d.id == canonical)
            return _DisplaySource(
                self,
                canonical,
                {"left": info.x, "top": info.y, "width": info.width, "height": info.height},
            )
        assert isinstance(sid.value, int)
        try:
            rect = self.window_rect(sid.value)
        except xerror.XError as e:
            raise InvalidInput(
                f"window {canonical} closed while opening it", source=canonical
            ) from e
        if rect is None:
            raise InvalidInput(f"window {canonical} is not visible", source=canonical)
        return _WindowSource(self, canonical, sid.value, rect[2], rect[3])

    def screenshot(self, source_id: str | None = None) -> Frame:
        if source_id is None:
            width, height = self.screen_size()
            return self.grab_region({"left": 0, "top": 0, "width": width, "height": height})
        source = self.open(source_id)
        try:
            return source.grab()
        finally:
            source.close()

    # Change reports: one watch for all display sources that listen, closed with the last
    # (a watch nobody polls would have the server queue its reports without end).

    def listen_for_changes(self, area: tuple[int, int, int, int]) -> ChangeListener | None:
        """A listener for changes in `area` of the root window; None without DAMAGE."""
        with self._watch_lock:
            if self._watch is False:
                self._watch = DamageWatch.open(self.display_name)
            return self._watch.listen(area) if self._watch is not None else None

    def poll_changes(self) -> None:
        with self._watch_lock:
            watch = self._watch
        if watch:
            watch.poll()

    def stop_listening(self, listener: ChangeListener) -> None:
        with self._watch_lock:
            if self._watch and self._watch.forget(listener) == 0:
                self._watch.close()
                self._watch = False

    def close(self) -> None:
        with self._watch_lock:
            if self._watch:
                self._watch.close()
            self._watch = False
        self._mss.close_all()
        self._xlib.close_all()
        self._readers.close_all()
        if self._tracker is not None:
            self._tracker.close()


def _get_property(d: xdisplay.Display, wid: int, atom: int) -> request.GetProperty:
    """A GetProperty request, sent but not waited for (its `reply()` waits)."""
    return request.GetProperty(
        display=d.display,
        defer=True,
        delete=False,
        window=wid,
        property=atom,
        type=X.AnyPropertyType,
        long_offset=0,
        long_length=1024,
    )


def _value(prop: request.GetProperty) -> Any:
    """The data of a GetProperty reply (bytes or a sequence of numbers); None if unset."""
    prop.reply()
    if prop.property_type == X.NONE:
        return None
    _format, data = prop.value  # (8, 16 or 32, data)
    return data


def _text(d: xdisplay.Display, prop: request.GetProperty) -> str:
    data = _value(prop)
    if not data:
        return ""
    raw = data if isinstance(data, bytes) else str(data).encode()
    utf8 = prop.property_type == d.get_atom("UTF8_STRING")
    return raw.decode("utf-8" if utf8 else "latin-1", errors="replace")


def _focused_window(
    d: xdisplay.Display, toplevels: dict[int, int]
) -> tuple[str, str, list[str]] | None:
    """(application, title, every name) of the focused top-level window."""
    root = d.screen().root
    names = [d.get_atom(a) for a in ("_NET_ACTIVE_WINDOW", "_NET_WM_NAME", "WM_NAME", "WM_CLASS")]
    active_atom, net_name, wm_name, wm_class = names
    # Both asked at once: one round trip.
    active = _get_property(d, root.id, active_atom)
    focus = request.GetInputFocus(display=d.display, defer=True)
    active_ids = _value(active)
    focus.reply()
    wid = 0
    if active_ids:
        wid = int(active_ids[0])
    elif not isinstance(focus.focus, int):  # an int is X.NONE or X.PointerRoot
        wid = int(focus.focus.id)
    if wid in (X.NONE, X.PointerRoot, root.id):
        return None
    start = wid
    wid = toplevels.get(start, wid)
    while True:
        # Title and class at once: one round trip.
        props = [_get_property(d, wid, atom) for atom in (net_name, wm_name, wm_class)]
        title = _text(d, props[0]) or _text(d, props[1])
        klass = _text(d, props[2]).split("\0")
        if title or len(klass) > 1:
            break
        parent = d.create_resource_object("window", wid).query_tree().parent
        if isinstance(parent, int) or parent.id in (X.NONE, root.id):
            break  # a top-level window with neither name nor class
        wid = parent.id
    if wid != start:
        if len(toplevels) > 256:
            toplevels.clear()
        toplevels[start] = wid
    # WM_CLASS is "instance\0class\0": the class names the application, as in `windows`.
    app = (klass[1] or klass[0]) if len(klass) > 1 else ""
    return app, title, [title, *klass[:2]]


class _DisplaySource(Source):
    """A monitor's area of the root window.

    Once a caller asks `changed` (the video's capture loop does, a screenshot does not),
    the source listens to the server's change reports (`DamageWatch`): a tick where nothing
    changed there grabs nothing, and a small change grabs only its bounding box, patched
    into a copy of the last frame.
    """

    def __init__(self, backend: X11Backend, source_id: str, region: Region) -> None:
        self.id = source_id
        self._backend, self._region = backend, region
        self._area = (region["left"], region["top"], region["width"], region["height"])
        self._changes: ChangeListener | None = None
        self._polling = False  # no change reports to be had: grab every tick
        self._last: Frame | None = None
        self._box: Box | None = None  # what the last grab changed; None: anything
        self._spare: list[_Spare] = []
        # The excluded windows' state at the last grab: a change there (a window renamed
        # into an exclusion draws nothing) needs a whole grab though no pixel changed.
        self._epoch: int | None = None
        self._shrink = 1  # frames are this many times smaller than the monitor (`show_at`)

    @property
    def size(self) -> tuple[int, int]:
        return self._region["width"] // self._shrink, self._region["height"] // self._shrink

    def show_at(self, width: int, height: int) -> bool:
        # Only a whole number of times smaller: a changed box is then scaled alone, in
        # whole blocks, and comes out as it does in a whole grab.
        full_w, full_h = self._region["width"], self._region["height"]
        if width < 1 or height < 1 or full_w % width or full_h % height:
            return False
        factor = full_w // width
        if full_h // height != factor:
            return False
        if factor != self._shrink:
            self._shrink = factor
            self._last, self._box = None, None  # the next grab is whole, at the new size
            self._spare.clear()
        return True

    def changed(self) -> bool:
        if self._polling or self._last is None:
            return True
        try:
            if self._backend._exclusion_epoch() != self._epoch:
                return True
            if self._changes is None:
                # Listening starts now, with a whole grab (what changed before is unknown).
                self._changes = self._backend.listen_for_changes(self._area)
                self._polling = self._changes is None
                return True
            self._backend.poll_changes()
        except _CONNECTION_ERRORS as e:
            raise CaptureError(f"lost the X display while watching {self.id}: {e}") from e
        return self._changes.pending or self._changes.dirty is not None

    @property
    def changed_box(self) -> Box | None:
        return self._box

    def grab(self) -> Frame:
        last, box, whole = self._last, None, True
        if self._changes is not None:
            whole, box = self._changes.take()
        try:
            epoch = self._backend._exclusion_epoch()
        except _CONNECTION_ERRORS as e:
            raise CaptureError(f"lost the X display while grabbing {self.id}: {e}") from e
        if epoch != self._epoch:
            whole, self._epoch = True, epoch  # what is blacked out changed: all of it anew
        k, monitor = self._shrink, (self._region["width"], self._region["height"])
        if whole or last is None or box is None or _large(box, monitor):
            frame = self._backend.grab_region(self._region, shrink=k)
            self._box = None
        else:
            # Out to whole k x k blocks, as the compositor draws a part of a shrunk cell:
            # a block is scaled alone, so the part comes out as in a whole shrunk grab.
            found = cell_part(box, monitor, (0, 0, *self.size))
            assert found is not None  # `show_at` takes only whole numbers
            part, (x0, y0, w0, h0) = found
            # Not the last frame itself: the caller still holds (and compares against) it.
            frame = self._unheld_copy(last, part)
            x, y, w, h = part
            self._backend.grab_region(
                {
                    "left": self._region["left"] + x0,
                    "top": self._region["top"] + y0,
                    "width": w0,
                    "height": h0,
                },
                into=frame[y : y + h, x : x + w],
                shrink=k,
            )
            self._box = part  # the rest of the frame is the last one's, copied
        if frame is not last and self._box is None:
            for spare in self._spare:
                spare.stale = None  # a whole new picture: they may differ anywhere
        self._last = frame
        return frame

    def _unheld_copy(self, last: Frame, box: Box) -> Frame:
        """A frame equal to `last`, to patch `box` into.

        Copying all 8 MB of a 1080p frame to change a small box of it cost more than
        grabbing the box. The source keeps a few frames of its own instead and reuses one
        that nobody else holds any more (its reference count says so: the pipeline has
        let go of it, and a view of it would hold it too), copying into it only what
        changed since it was last handed out.
        """
        if not self._spare:
            # All of them at once, each a copy of the last frame: the pool is as big as it
            # will ever be from the first small change on, instead of growing by 8 MB
            # whenever a busy moment finds every spare held (resident memory would climb
            # by steps through the first half hour).
            self._spare = [_Spare(last.copy(), NO_CHANGE) for _ in range(SPARE_FRAMES)]
        chosen: _Spare | None = None
        for spare in self._spare:
            if spare.frame is not last and sys.getrefcount(spare.frame) == _UNHELD:
                chosen = spare
                break
        if chosen is None and len(self._spare) < SPARE_FRAMES:
            chosen = _Spare(np.empty_like(last))
            self._spare.append(chosen)
        for spare in self._spare:
            if spare is not chosen:
                spare.stale = union_box(spare.stale, box)
        if chosen is None:
            return last.copy()  # every one of them is still held
        # Whoever held it may have made it read-only (the compositor does): nobody does now.
        chosen.frame.flags.writeable = True
        if chosen.stale is None:
            np.copyto(chosen.frame, last)
        else:
            x, y, w, h = chosen.stale
            chosen.frame[y : y + h, x : x + w] = last[y : y + h, x : x + w]
        chosen.stale = NO_CHANGE  # it is the source's last frame once `box` is patched in
        return chosen.frame

    def close(self) -> None:
        self._spare.clear()
        if self._changes is not None:
            self._backend.stop_listening(self._changes)
            self._changes = None


# Frames a display source keeps to patch changed boxes into (see `_unheld_copy`).
SPARE_FRAMES = 3


@dataclasses.dataclass
class _Spare:
    frame: Frame
    # Where it differs from the source's last frame (None: anywhere; not yet filled).
    stale: Box | None = None


def _unheld_count() -> int:
    """`sys.getrefcount(spare.frame)` of a frame that only its `_Spare` holds, asked the
    way `_unheld_copy` asks (how many references the call itself adds is the
    interpreter's business)."""
    spare = _Spare(np.empty(0, np.uint8))
    return sys.getrefcount(spare.frame)


_UNHELD = _unheld_count()


def _large(box: tuple[int, int, int, int], size: tuple[int, int]) -> bool:
    # Past a third of the area, one whole grab is cheaper than a copy plus a partial one.
    return box[2] * box[3] * 3 > size[0] * size[1]


class _WindowSource(Source):
    """A window's own pixels, read from its off-screen storage (Composite); the frame size
    is fixed at open (or by `show_at`), a resized window is scaled into it, straight out of
    the server's memory.

    Redirection belongs to the connection that asked for it, so the source keeps its own
    Xlib connection (to redirect and name the storage) and its own XCB one to read the
    pixels in C (`x11_pixels`). Closing them ends the redirection. One lock: grabs may
    come from any thread.

    Once a caller asks `changed`, the source hears on that connection the server's change
    reports for the window's own contents (DAMAGE, drawn while covered too) and its
    structure (unmapped, mapped, resized, destroyed): a tick where none came grabs
    nothing. Without DAMAGE (or with `TASKERINO_CAPTURE=poll`) every tick grabs.
    """

    def __init__(
        self, backend: X11Backend, source_id: str, wid: int, width: int, height: int
    ) -> None:
        self.id = source_id
        self._backend, self._wid = backend, wid
        self._width, self._height = width, height
        self._opened = (width, height)  # the window's size when it was opened
        self._gone = False
        self._hidden = False
        self._last: Frame | None = None
        self._lock = threading.Lock()
        self._pixels: DrawableReader | None = None
        # Change reports: None until `changed` is first asked, then True (listening) or
        # False (no reports to be had: every tick grabs).
        self._listening: bool | None = None
        self._damage: Any = None
        self._damage_event = -1
        self._reported = False  # a report came since the last grab
        self._epoch: int | None = None  # the exclusions' state at the last grab
        self._x = backend._new_xlib()
        try:
            self._x.set_error_handler(_ignore_async)
            if not self._x.has_extension(composite.extname):
                raise CaptureError(
                    f"cannot capture {source_id}: the X display {backend.display_name} lacks "
                    "the Composite extension that reads a window's own pixels; record a "
                    "display:N source instead"
                )
            # Any: the Composite methods are added at run time (no stubs know them).
            self._window: Any = cast(Any, self._x.create_resource_object("window", wid))
            self._window.composite_redirect_window(composite.RedirectAutomatic)
            self._x.sync()
            self._pixels = DrawableReader(backend.display_name)
        except _CONNECTION_ERRORS as e:
            self.close()
            raise CaptureError(f"cannot capture {source_id}: {e}") from e
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> tuple[int, int]:
        return self._width, self._height

    def show_at(self, width: int, height: int) -> bool:
        if not (0 < width < self._opened[0] and 0 < height < self._opened[1]):
            return False
        with self._lock:
            self._width, self._height = width, height
            self._last = None
        return True

    def _picture(self, pixels: Frame) -> Frame:
        """The frame made of the window's `pixels` (a view, valid during the call)."""
        if pixels.shape[1::-1] == self.size:
            return pixels.copy()
        if pixels.shape[1::-1] == self._opened:
            # Exactly what the compositor would draw into the cell of `show_at`.
            out: Frame = np.empty((self._height, self._width, 4), np.uint8)
            cv2.resize(pixels, self.size, dst=out, interpolation=cv2.INTER_AREA)
            return out
        return fit(pixels, *self.size)  # resized since: kept whole, letterboxed

    @property
    def gone(self) -> bool:
        if not self._gone:
            with self._lock:
                try:
                    self._window.get_attributes()
                except xerror.XError:
                    self._gone = True
                except _CONNECTION_ERRORS as e:
                    raise CaptureError(f"lost the X display while watching {self.id}: {e}") from e
        return self._gone

    @property
    def hidden(self) -> bool:
        return self._hidden and not self._gone

    def _previous(self) -> Frame:
        # A copy: the caller may still hold (and change) the frame it got before.
        return self._last.copy() if self._last is not None else black(*self.size)

    def changed(self) -> bool:
        with self._lock:
            if self._gone:
                return self._last is None  # its last picture stands for good
            if self._last is None or self._listening is False:
                return True
            try:
                if self._backend._exclusion_epoch() != self._epoch:
                    return True  # blacked out, or no longer: though no pixel changed
                if self._listening is None:
                    # Listening starts now, with a grab (what changed before is unknown).
                    self._listening = self._listen()
                    return True
                while self._x.pending_events():
                    event = self._x.next_event()
                    if event.type == self._damage_event or event.type in _STRUCTURE_EVENTS:
                        self._reported = True
            except _CONNECTION_ERRORS as e:
                raise CaptureError(f"lost the X display while watching {self.id}: {e}") from e
            return self._reported

    def _listen(self) -> bool:
        """Ask the server for the window's change reports; False where there are none."""
        if os.environ.get(CAPTURE_MODE_ENV, "").strip().lower() == "poll":
            return False
        if not self._x.has_extension("DAMAGE"):
            return False
        extension = self._x.query_extension("DAMAGE")
        if extension is None:
            return False
        self._x.damage_query_version()  # the server wants the version first
        # python-xlib registers a copy of the event class: compare codes, not classes.
        self._damage_event = extension.first_event + xdamage.DamageNotifyCode
        self._window.change_attributes(event_mask=X.StructureNotifyMask)
        self._damage = self._window.damage_create(xdamage.DamageReportNonEmpty)
        self._x.flush()
        return True

    def grab(self) -> Frame:
        with self._lock:
            if self._gone:
                return self._previous()
            token = self._backend._hidden_token()
            # The exclusions' state as `_exclusion_epoch` tells it, without asking again.
            self._epoch = token if self._backend._masking else None
            try:
                if self._listening:
                    # Cleared before the read: whatever is drawn after it is reported anew.
                    self._reported = False
                    self._x.damage_subtract(self._damage, X.NONE, X.NONE)
                window = self._contents()
            except xerror.XError:
                self._gone = True
                return self._previous()
            except _CONNECTION_ERRORS as e:
                raise CaptureError(f"lost the X display while grabbing {self.id}: {e}") from e
            self._hidden = window is None
            if window is None:  # unmapped (minimised): keep showing what it showed
                return self._previous()
            hidden = self._backend._hidden_since(token)
            if hidden is not None and (hidden.everything or self._wid in hidden.windows):
                window = black(*self.size)
            self._last = window
            return window

    def _contents(self) -> Frame | None:
        """The window's pixels, None while it is not viewable; XError once destroyed."""
        if self._window.get_attributes().map_state != X.IsViewable:
            return None
        caught = xerror.CatchError()
        pixmap = self._window.composite_name_window_pixmap(onerror=caught)
        try:
            # A round trip after the naming: the pixmap exists now, or the error is in.
            geom = self._window.get_geometry()
            if caught.get_error() is not None:
                return None  # unmapped in between
            w, h, bw = geom.width, geom.height, geom.border_width
            assert self._pixels is not None
            try:
                data = self._pixels.read(pixmap.id, bw, bw, w, h, then=self._picture)
            except XcbError:
                return None  # resized between the naming and the reading: next time
            except CaptureError as e:
                raise CaptureError(f"cannot capture {self.id}: {e}") from e
        finally:
            pixmap.free(onerror=_ignore_async)
            self._x.flush()
        return data

    def close(self) -> None:
        with self._lock:
            if self._pixels is not None:
                self._pixels.close()
                self._pixels = None
            with contextlib.suppress(*_CONNECTION_ERRORS):
                self._x.close()  # ends the redirection


# Events that change what a window source shows beyond its pixels (hidden, gone, resized).
_STRUCTURE_EVENTS = frozenset({X.UnmapNotify, X.MapNotify, X.ConfigureNotify, X.DestroyNotify})


def _ignore_async(*_: object) -> None:
    """Errors of requests without replies (the window vanished): the next round trip on
    the same connection tells what happened."""
