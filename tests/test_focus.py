"""The activity track's probe: which window has the focus, on Xvfb with real xterms."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from Xlib import X, Xatom
from Xlib import display as xdisplay
from Xlib.protocol import display as protocol_display

from taskerino.capture.x11 import X11Backend
from taskerino.virtual import VirtualDisplay

from .xterm import xterm


@pytest.fixture
def backend(xdisplay: VirtualDisplay) -> Iterator[X11Backend]:
    b = X11Backend()
    yield b
    b.close()


@pytest.fixture
def x() -> Iterator[xdisplay.Display]:
    """A connection of the test's own; leaves the focus and root properties as it found them."""
    d = xdisplay.Display()
    yield d
    d.screen().root.delete_property(d.get_atom("_NET_ACTIVE_WINDOW"))
    d.set_input_focus(X.PointerRoot, X.RevertToPointerRoot, X.CurrentTime)
    d.sync()
    d.close()


def focus(wid: int) -> None:
    subprocess.run(["xdotool", "windowfocus", "--sync", str(wid)], env=dict(os.environ), check=True)


def test_follows_the_input_focus_between_two_xterms(
    backend: X11Backend, x: xdisplay.Display
) -> None:
    with (
        xterm("probe left", ["left"], x=0, y=600) as left,
        xterm("probe right", ["right"], x=700, y=600) as right,
    ):
        focus(left.wid)
        assert backend.focused_window() == ("XTerm", "probe left")
        focus(right.wid)
        assert backend.focused_window() == ("XTerm", "probe right")
        focus(left.wid)
        assert backend.focused_window() == ("XTerm", "probe left")

        # Focus on an inner window of xterm (its text widget): its top-level is reported.
        inner = x.create_resource_object("window", right.wid).query_tree().children
        assert inner, "xterm has no child window"
        x.set_input_focus(inner[0], X.RevertToParent, X.CurrentTime)
        x.sync()
        assert backend.focused_window() == ("XTerm", "probe right")
        assert backend.focused_window() == ("XTerm", "probe right")  # remembered: same answer

        # A window manager's _NET_ACTIVE_WINDOW wins over the raw input focus.
        root = x.screen().root
        root.change_property(
            x.get_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32, [left.wid], X.PropModeReplace
        )
        x.sync()
        assert backend.focused_window() == ("XTerm", "probe left")
        root.change_property(
            x.get_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32, [0], X.PropModeReplace
        )
        x.sync()
        assert backend.focused_window() is None  # the window manager says: nothing active
        root.delete_property(x.get_atom("_NET_ACTIVE_WINDOW"))
        x.sync()

        # A title that changes is read afresh on every call.
        x.create_resource_object("window", right.wid).set_wm_name("renamed right")
        x.sync()
        focus(right.wid)
        assert backend.focused_window() == ("XTerm", "renamed right")

    # The focused window went away: no focus, no error.
    deadline = time.monotonic() + 5
    while backend.focused_window() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.focused_window() is None


def test_no_focus_and_pointer_root(backend: X11Backend, x: xdisplay.Display) -> None:
    x.set_input_focus(X.NONE, X.RevertToNone, X.CurrentTime)
    x.sync()
    assert backend.focused_window() is None
    x.set_input_focus(X.PointerRoot, X.RevertToPointerRoot, X.CurrentTime)
    x.sync()
    assert backend.focused_window() is None


def test_probe_is_cheap(
    backend: X11Backend, x: xdisplay.Display, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once warm, a probe is five requests sent in two batches (two round trips)."""
    with xterm("probe cheap", ["cheap"], x=0, y=600) as term:
        inner = x.create_resource_object("window", term.wid).query_tree().children[0]
        x.set_input_focus(inner, X.RevertToParent, X.CurrentTime)
        x.sync()
        assert backend.focused_window() == ("XTerm", "probe cheap")  # walks up once

        sent: list[str] = []
        original = protocol_display.Display.send_request

        def counting(self: protocol_display.Display, request: Any, wait: bool) -> None:
            sent.append(type(request).__name__)
            original(self, request, wait)

        monkeypatch.setattr(protocol_display.Display, "send_request", counting)
        for _ in range(3):
            assert backend.focused_window() == ("XTerm", "probe cheap")
        monkeypatch.undo()
    assert sent == ["GetProperty", "GetInputFocus", "GetProperty", "GetProperty", "GetProperty"] * 3
