"""The capture package on a real Xvfb: listing, grabbing, windows, test sources, bad ids."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from Xlib import X
from Xlib import display as xdisplay
from Xlib.xobject.drawable import Window

from taskerino.capture import (
    CaptureBackend,
    Frame,
    get_backend,
    open_source,
    parse_source_id,
    validate_sources,
)
from taskerino.capture.synthetic import TestPatternSource, colour_for
from taskerino.capture.x11 import X11Backend
from taskerino.errors import CaptureError, InvalidInput
from taskerino.virtual import VirtualDisplay

RED, GREEN, BLUE = 0xFF0000, 0x00FF00, 0x0000FF  # X pixel values on a 24-bit TrueColor screen
BGR = {RED: (0, 0, 255), GREEN: (0, 255, 0), BLUE: (255, 0, 0)}


@pytest.fixture(scope="module")
def backend(xdisplay: VirtualDisplay) -> Iterator[CaptureBackend]:
    b = get_backend()
    yield b
    b.close()


@contextmanager
def x_window(
    x: int, y: int, width: int, height: int, pixel: int, title: str = "Taskerino test window"
) -> Iterator[tuple[xdisplay.Display, Window]]:
    """A mapped top-level window filled with `pixel`, destroyed on exit."""
    d = xdisplay.Display()
    try:
        root = d.screen().root
        window = root.create_window(
            x,
            y,
            width,
            height,
            0,
            d.screen().root_depth,
            X.InputOutput,
            X.CopyFromParent,
            background_pixel=pixel,
            override_redirect=True,
        )
        window.set_wm_name(title)
        window.set_wm_class("taskerino-test", "TaskerinoTest")
        window.map()
        d.sync()
        yield d, window
        window.destroy()
        d.sync()
    finally:
        d.close()


def bgr(frame: Frame, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(c) for c in frame[y, x, :3])


def test_two_displays_with_sizes_positions_and_names(backend: CaptureBackend) -> None:
    displays = backend.displays()
    assert [(d.id, d.name, d.width, d.height, d.x, d.y) for d in displays] == [
        ("display:1", "LEFT", 1920, 1080, 0, 0),
        ("display:2", "RIGHT", 1280, 720, 1920, 0),
    ]
    assert [d.primary for d in displays] == [True, False]  # none is primary: the first is


def test_single_screen_without_monitors_still_lists_one_display() -> None:
    with VirtualDisplay(1600, 900, monitors=False) as plain:
        b = X11Backend(plain.name)
        try:
            [only] = b.displays()
            assert (only.id, only.width, only.height, only.primary) == (
                "display:1",
                1600,
                900,
                True,
            )
            assert b.screenshot("display:1").shape == (900, 1600, 4)
        finally:
            b.close()


def test_screenshot_of_all_displays_and_of_one(backend: CaptureBackend) -> None:
    whole = backend.screenshot()
    assert whole.shape == (1080, 3200, 4) and whole.dtype == np.uint8
    assert backend.screenshot("display:2").shape == (720, 1280, 4)
    assert backend.screenshot("display:1").shape == (1080, 1920, 4)


def test_window_is_listed_grabbed_followed_and_gone(backend: CaptureBackend) -> None:
    with x_window(100, 150, 320, 240, RED) as (d, window):
        wid = f"window:{window.id:#x}"
        [info] = [w for w in backend.windows() if w.id == wid]
        assert (info.title, info.app) == ("Taskerino test window", "TaskerinoTest")
        assert (info.x, info.y, info.width, info.height) == (100, 150, 320, 240)

        source = backend.open(wid)
        assert source.size == (320, 240)
        frame = source.grab()
        assert frame.shape == (240, 320, 4)
        assert bgr(frame, 0, 0) == bgr(frame, 319, 239) == BGR[RED]
        assert not source.gone

        # Moved half off the right edge and resized: its own pixels, all of them (also
        # beyond the screen edge), scaled into the opening size.
        window.configure(x=3200 - 100, y=0, width=640, height=240)
        d.sync()
        moved = source.grab()
        assert moved.shape == (240, 320, 4)
        assert bgr(moved, 5, 120) == bgr(moved, 300, 120) == BGR[RED]
    assert source.gone
    after = source.grab()
    assert after.shape == (240, 320, 4)
    assert np.array_equal(after, moved)  # the last frame, not an error
    source.close()


def test_a_window_shown_smaller_is_scaled_as_it_is_read(backend: CaptureBackend) -> None:
    """Shown in a smaller cell, a window source gives frames of that size: what the
    compositor would draw there from the whole window; resized, the window is letterboxed
    into that size."""
    with x_window(100, 150, 320, 240, RED) as (d, window):
        gc = window.create_gc(foreground=GREEN)
        window.fill_rectangle(gc.id, 33, 17, 101, 57)  # odd edges: blocks mix the colours
        d.sync()
        wid = f"window:{window.id:#x}"
        whole, small = backend.open(wid), backend.open(wid)
        try:
            assert not small.show_at(320, 240)  # not smaller
            assert small.show_at(160, 120) and small.size == (160, 120)
            expected = cv2.resize(whole.grab(), (160, 120), interpolation=cv2.INTER_AREA)
            frame = small.grab()
            assert np.array_equal(frame, expected)
            assert bgr(frame, 40, 30) == BGR[GREEN] and bgr(frame, 150, 110) == BGR[RED]
            window.configure(width=640, height=240)
            d.sync()
            frame = small.grab()
            # 640x240 fits 160x60 into 160x120: black bars of 30 rows above and below.
            assert frame.shape == (120, 160, 4)
            assert not frame[:30].any() and not frame[90:].any()
            assert bgr(frame, 150, 60) == BGR[RED]
        finally:
            whole.close()
            small.close()


def test_window_on_the_right_monitor_shows_in_display_2(backend: CaptureBackend) -> None:
    with x_window(1920 + 200, 100, 300, 200, GREEN):
        right = backend.screenshot("display:2")
        assert bgr(right, 200, 100) == bgr(right, 499, 299) == BGR[GREEN]
        assert bgr(right, 199, 100) != BGR[GREEN]
        left = backend.screenshot("display:1")
        assert not (left[..., :3] == BGR[GREEN]).all(axis=2).any()
        whole = backend.screenshot()
        assert bgr(whole, 1920 + 200, 100) == BGR[GREEN]


def test_grab_from_another_thread_than_the_opener(backend: CaptureBackend) -> None:
    with x_window(300, 300, 200, 100, BLUE) as (_, window):
        display = backend.open("display:1")
        win = backend.open(f"window:{window.id:#x}")
        frames: list[Frame] = []
        errors: list[BaseException] = []

        def capture() -> None:
            try:
                for _ in range(5):
                    frames.extend([display.grab(), win.grab()])
            except BaseException as e:  # surfaced in the test thread below
                errors.append(e)

        threads = [threading.Thread(target=capture) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(frames) == 20
        assert bgr(frames[0], 300, 300) == BGR[BLUE]
        assert bgr(frames[1], 100, 50) == BGR[BLUE]
        assert not win.gone
        win.close()


def test_test_sources_have_their_colours_and_move() -> None:
    red, blue = TestPatternSource("red"), TestPatternSource("blue")
    assert red.size == (1280, 720)
    foo = TestPatternSource("foo")  # any other name: a stable colour from its hash
    for source, colour in ((red, (0, 0, 255)), (blue, (255, 0, 0)), (foo, colour_for("foo"))):
        frame = source.grab()
        assert frame.shape == (720, 1280, 4)
        # The background dominates: the median pixel is the named colour.
        assert tuple(int(c) for c in np.median(frame[..., :3].reshape(-1, 3), axis=0)) == colour
    first, second = red.grab(), red.grab()
    assert not np.array_equal(first, second)  # the counter changes every frame
    assert colour_for("foo") == colour_for("foo") != colour_for("bar")


def test_moving_bar_follows_the_clock_and_still_does_not_move() -> None:
    now = [0.0]
    moving = TestPatternSource("green", 320, 180, clock=lambda: now[0])
    a = moving.grab()
    now[0] = 1.0
    b = moving.grab()
    bottom = slice(170, 180)  # below the counter text: only the bar differs
    assert not np.array_equal(a[bottom], b[bottom])

    still = TestPatternSource("still-red", 320, 180)
    frames = [still.grab() for _ in range(3)]
    assert all(np.array_equal(frames[0], f) for f in frames)
    assert bgr(frames[0], 0, 0) == (0, 0, 255)


def test_test_source_via_backend(backend: CaptureBackend) -> None:
    source = open_source("test:cyan", lambda: backend)
    assert source.id == "test:cyan" and source.size == (1280, 720)
    assert bgr(source.grab(), 1279, 719) == (255, 255, 0)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("display:1", "display:1"),
        ("display:01", "display:1"),
        ("window:0x1A00003", "window:0x1a00003"),
        ("window:27262979", "window:0x1a00003"),
        ("test:still-red", "test:still-red"),
        ("test:My_Demo-2", "test:My_Demo-2"),
    ],
)
def test_parse_gives_canonical_ids(text: str, canonical: str) -> None:
    assert str(parse_source_id(text)) == canonical


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("display:abc", "display:N needs a whole number N from 1"),
        ("display:0", "display:N needs a whole number N from 1"),
        ("display:-1", "display:N needs a whole number N from 1"),
        ("window:zz", "window:ID needs an X11 window id"),
        ("window:", "window:ID needs an X11 window id"),
        ("window:0x0", "window id out of range"),
        ("foo", "expected display:N (N from 'taskerino sources'), window:ID or test:NAME"),
        ("screen:1", "expected display:N"),
        ("", "expected display:N"),
        ("test:", "test:NAME needs a name of 1-40 letters"),
        ("test:a b", "test:NAME needs a name of 1-40 letters"),
        ("test:" + "x" * 41, "test:NAME needs a name of 1-40 letters"),
    ],
)
def test_malformed_ids_are_refused_with_what_is_allowed(text: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_source_id(text)
    assert str(caught.value).startswith(f"invalid source {text!r}: ")
    assert says in str(caught.value)


def test_unknown_and_duplicate_sources_are_refused(backend: CaptureBackend) -> None:
    with pytest.raises(
        InvalidInput,
        match=r"unknown source 'display:99': available displays "
        r"are display:1 \(LEFT 1920x1080\), display:2 \(RIGHT 1280x720\)",
    ):
        validate_sources(["display:99"], backend)
    with pytest.raises(InvalidInput, match=r"unknown source 'window:0x7ffffff': no such window"):
        validate_sources(["window:0x7ffffff"], backend)
    with pytest.raises(InvalidInput, match=r"unknown source 'display:99'"):
        backend.open("display:99")
    with pytest.raises(InvalidInput, match=r"'display:01' is given twice"):
        validate_sources(["display:1", "display:01"], backend)
    with pytest.raises(InvalidInput, match=r"'display:abc'"):
        validate_sources(["display:1", "display:abc"], backend)
    assert validate_sources(["display:2", "test:red", "display:1"], backend) == [
        "display:2",
        "test:red",
        "display:1",
    ]


def test_no_display_and_other_platforms_are_clear_errors(
    xdisplay: VirtualDisplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY")
    with pytest.raises(CaptureError, match="no X display: set DISPLAY"):
        get_backend()
    explicit = get_backend(xdisplay.name)  # an explicit display needs no DISPLAY
    assert len(explicit.displays()) == 2
    explicit.close()
    explicit.close()  # twice is fine
    with pytest.raises(CaptureError, match="closed"):
        explicit.screenshot()
    with pytest.raises(CaptureError, match="cannot connect to X display :1999"):
        X11Backend(":1999")
    monkeypatch.setattr("sys.platform", "darwin")
    with pytest.raises(CaptureError, match=r"ScreenCaptureKit via pyobjc.*planned"):
        get_backend(xdisplay.name)
