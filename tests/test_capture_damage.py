"""Change-driven capture: the server's change reports (DAMAGE) decide what is grabbed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from Xlib import X
from Xlib import display as xdisplay
from Xlib.ext import xtest

import taskerino.capture.x11 as x11
from taskerino.capture.damage import CAPTURE_MODE_ENV, DamageWatch
from taskerino.capture.x11 import X11Backend
from taskerino.models import parse_time
from taskerino.sessions import Taskerino
from taskerino.virtual import VirtualDisplay

from .test_capture import x_window
from .test_video import decode, full_video, video_request

RED, GREEN = 0xFF0000, 0x00FF00


@pytest.fixture(scope="module")
def screen() -> Iterator[VirtualDisplay]:
    """A display of its own: no other test's windows change it."""
    with VirtualDisplay() as display:
        yield display


@pytest.fixture
def counted(screen: VirtualDisplay, monkeypatch: pytest.MonkeyPatch) -> Iterator[X11Backend]:
    """A backend that counts the pixels it grabs."""
    monkeypatch.setenv("DISPLAY", screen.name)
    backend = X11Backend(screen.name)
    grabbed: list[int] = []
    real = backend.grab_region

    def grab_region(
        region: dict[str, int], into: np.ndarray | None = None, shrink: int = 1
    ) -> np.ndarray:
        grabbed.append(region["width"] * region["height"])
        return real(region, into, shrink)

    monkeypatch.setattr(backend, "grab_region", grab_region)
    backend.grabbed = grabbed  # type: ignore[attr-defined]
    yield backend
    backend.close()


def settle(source: object, ticks: int = 20) -> None:
    """Grab until the source reports nothing new (the window's first paint has landed)."""
    for _ in range(ticks):
        time.sleep(0.05)
        if not source.changed():  # type: ignore[attr-defined]
            return
        source.grab()  # type: ignore[attr-defined]
    raise AssertionError("the screen never became still")


def test_a_still_screen_and_cursor_moves_grab_nothing(
    screen: VirtualDisplay, counted: X11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = counted.open("display:1")
    try:
        assert source.changed()  # nothing grabbed yet
        source.grab()
        settle(source)
        before = len(counted.grabbed)  # type: ignore[attr-defined]
        d = xdisplay.Display(screen.name)
        try:
            for i in range(30):
                xtest.fake_input(d, X.MotionNotify, x=100 + 20 * i, y=100 + 10 * i)
                d.sync()
                time.sleep(0.01)
                assert not source.changed()
        finally:
            d.close()
        assert len(counted.grabbed) == before  # type: ignore[attr-defined]
    finally:
        source.close()


def test_a_small_change_grabs_only_its_box_and_gives_the_true_picture(
    screen: VirtualDisplay, counted: X11Backend
) -> None:
    source = counted.open("display:1")
    try:
        source.grab()
        settle(source)
        counted.grabbed.clear()  # type: ignore[attr-defined]
        with x_window(400, 300, 12, 20, RED) as _window:  # about one character cell
            deadline = time.monotonic() + 10
            while not source.changed():
                assert time.monotonic() < deadline, "the change was not reported"
                time.sleep(0.02)
            before = source._last  # type: ignore[attr-defined]
            frame = source.grab()
            truth = counted.grab_region({"left": 0, "top": 0, "width": 1920, "height": 1080})
            assert np.array_equal(frame, truth)
            assert tuple(frame[310, 405, :3]) == (0, 0, 255)  # BGR red
            # Only the box of the change was grabbed for the frame, not the monitor.
            assert counted.grabbed[0] <= 4 * 12 * 20  # type: ignore[attr-defined]
            # The frame says where it changed: outside that box it is the last one.
            box = source.changed_box
            assert box is not None and box[2] * box[3] <= 4 * 12 * 20
            x, y, w, h = box
            assert x <= 400 and y <= 300 and x + w >= 412 and y + h >= 320
            outside = np.ones(frame.shape[:2], bool)
            outside[y : y + h, x : x + w] = False
            assert np.array_equal(frame[outside], before[outside])
        # The window's removal is a change too: the picture is the true one again.
        deadline = time.monotonic() + 10
        while not source.changed():
            assert time.monotonic() < deadline, "the removal was not reported"
            time.sleep(0.02)
        frame = source.grab()
        truth = counted.grab_region({"left": 0, "top": 0, "width": 1920, "height": 1080})
        assert np.array_equal(frame, truth)
        assert tuple(frame[310, 405, :3]) != (0, 0, 255)
    finally:
        source.close()


@pytest.mark.parametrize("shrink", [1, 2, 3])
def test_frames_patched_from_changed_boxes_are_true_and_never_change_once_handed_out(
    screen: VirtualDisplay, counted: X11Backend, shrink: int
) -> None:
    """A small change is patched into a frame the source keeps and reuses once nobody
    holds it (even one its holder made read-only): every frame is the true screen, and a
    frame still held is never touched. Shrunk (a display shown in a smaller cell), every
    frame is the true screen scaled as the compositor scales it, though only the changed
    box (out to whole blocks) is grabbed."""
    source = counted.open("display:1")
    try:
        size = (1920 // shrink, 1080 // shrink)
        assert source.show_at(*size)
        assert source.size == size
        assert source.grab().shape == (size[1], size[0], 4)
        settle(source)
        held: list[tuple[np.ndarray, np.ndarray]] = []  # (frame, its pixels when grabbed)
        addresses = []
        with x_window(201, 199, 41, 31, RED) as (d, window):
            for i in range(12):
                window.configure(x=201 + 25 * i, y=199 + 7 * (i % 3))
                d.sync()
                deadline = time.monotonic() + 10
                while not source.changed():
                    assert time.monotonic() < deadline, "the move was not reported"
                    time.sleep(0.02)
                counted.grabbed.clear()  # type: ignore[attr-defined]
                frame = source.grab()
                # Only the box of the move (old and new place), out to whole blocks.
                box_most = 2 * (41 + 25 + 2 * shrink) * (31 + 14 + 2 * shrink)
                assert counted.grabbed[0] <= box_most  # type: ignore[attr-defined]
                whole = counted.grab_region({"left": 0, "top": 0, "width": 1920, "height": 1080})
                truth = cv2.resize(whole, size, interpolation=cv2.INTER_AREA)
                assert np.array_equal(frame, truth), f"move {i}"
                assert source.changed_box is not None  # a partial grab
                frame.flags.writeable = False  # as the compositor leaves what it was given
                addresses.append(frame.ctypes.data)
                if i % 4 == 1:
                    held.append((frame, frame.copy()))
                del frame
        for frame, pixels in held:
            assert np.array_equal(frame, pixels)
        # Frames nobody held any more were reused, not copied anew each time.
        assert len(set(addresses)) < len(addresses) - len(held)
    finally:
        source.close()


@pytest.mark.parametrize(
    ("sources", "size", "probe"),
    [
        # display:1 fills the 1280x720 output: (705, 509) lands near (470, 339).
        (["display:1"], (1280, 720), (470, 339)),
        # At the display's own size the picture is the grab itself, changed box and all:
        # only the box is converted for the encoder.
        (["display:1"], (1920, 1080), (705, 509)),
        # Halved: only the changed part of the picture is scaled again, and converted.
        (["display:1"], (960, 540), (352, 254)),
        # In a grid beside display:2, display:1 is halved into the left cell (part redrawn),
        # display:2 scaled by 3/4 into the right one (drawn whole).
        (["display:1", "display:2"], (1920, 1080), (352, 270 + 254)),
    ],
)
def test_a_one_character_edit_lands_in_the_video_at_its_moment(
    screen: VirtualDisplay,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sources: list[str],
    size: tuple[int, int],
    probe: tuple[int, int],
) -> None:
    monkeypatch.setenv("DISPLAY", screen.name)
    fps = 15
    (tmp_path / "home").mkdir(mode=0o700)
    library = Taskerino.open(tmp_path / "home")
    try:
        compositor = "grid" if len(sources) > 1 else None
        request = video_request(*sources, fps=fps, size=size, compositor=compositor)
        session = library.start(request)
        try:
            time.sleep(1.5)  # a still screen first
            d = xdisplay.Display(screen.name)
            try:
                root = d.screen().root
                window = root.create_window(
                    700,
                    500,
                    10,
                    18,
                    0,
                    d.screen().root_depth,
                    X.InputOutput,
                    X.CopyFromParent,
                    background_pixel=GREEN,
                    override_redirect=True,
                )
                window.map()
                d.sync()
                changed_at = time.time() - parse_time(session.start_time).timestamp()
                time.sleep(1.5)
                window.unmap()  # and the edit undone
                d.sync()
                undone_at = time.time() - parse_time(session.start_time).timestamp()
                time.sleep(1.0)
            finally:
                d.close()
        finally:
            ended = library.end(session.id)
        stats = library.stats(session.id)
        path = full_video(library, ended)
    finally:
        library.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        shown = []
        for frame in container.decode(stream):
            assert frame.pts is not None and frame.time_base is not None
            picture = frame.to_ndarray(format="bgr24")
            x, y = probe
            shown.append((float(frame.pts * frame.time_base), int(picture[y, x, 1]) > 200))
    first = next(t for t, green in shown if green)
    assert not any(green for t, green in shown if t < first)
    gone = next(t for t, green in shown if t > first and not green)
    assert not any(green for t, green in shown if t >= gone)
    assert undone_at - 0.05 <= gone <= undone_at + 1 / fps + 0.5, (gone, undone_at)
    # Not before it happened; on a quiet machine within one frame interval after it (the
    # margin is for a busy one: the tick that grabs it may run late).
    assert changed_at - 0.05 <= first <= changed_at + 1 / fps + 0.5, (first, changed_at)
    # A still screen was not re-encoded: far fewer frames than ticks.
    assert len(shown) < 0.5 * fps * (ended.total_duration or 0)
    assert stats.frames_captured > len(shown)


def test_a_display_shown_smaller_in_its_cell_is_grabbed_at_that_size(
    screen: VirtualDisplay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a 1920x1080 grid, display:1 (1920x1080) is shown halved: its grabs are 960x540
    and never the whole monitor; display:2 (1280x720, shown at 3/4: not a whole number of
    times smaller) says no, and is grabbed whole and scaled by the compositor. The video
    shows both."""
    monkeypatch.setenv("DISPLAY", screen.name)
    asked: list[tuple[str, int, int]] = []
    shapes: dict[str, set[tuple[int, ...]]] = {"display:1": set(), "display:2": set()}
    real_show_at, real_grab = x11._DisplaySource.show_at, x11._DisplaySource.grab

    def show_at(self: x11._DisplaySource, width: int, height: int) -> bool:
        asked.append((self.id, width, height))
        return real_show_at(self, width, height)

    def grab(self: x11._DisplaySource) -> np.ndarray:
        frame = real_grab(self)
        shapes[self.id].add(frame.shape)
        return frame

    monkeypatch.setattr(x11._DisplaySource, "show_at", show_at)
    monkeypatch.setattr(x11._DisplaySource, "grab", grab)
    (tmp_path / "home").mkdir(mode=0o700)
    library = Taskerino.open(tmp_path / "home")
    try:
        request = video_request("display:1", "display:2", size=(1920, 1080), compositor="grid")
        with x_window(600, 400, 200, 100, RED), x_window(1920 + 400, 300, 200, 100, GREEN):
            session = library.start(request)
            time.sleep(1.0)
            ended = library.end(session.id)
        frames, _, _ = decode(full_video(library, ended))
    finally:
        library.close()
    assert asked == [("display:1", 960, 540), ("display:2", 960, 540)]
    assert shapes == {"display:1": {(540, 960, 4)}, "display:2": {(720, 1280, 4)}}
    # display:1 in the left cell (0, 270)-(960, 810) at half size, display:2 in the right
    # one at 3/4 (its 720 rows fill 540 of them).
    last = frames[-1]
    assert tuple(last[270 + 225, 350]) == pytest.approx((0, 0, 255), abs=40)  # red, halved
    assert tuple(last[270 + 262, 960 + 375]) == pytest.approx((0, 255, 0), abs=40)  # green


def test_a_window_source_grabs_only_when_its_window_changes(
    screen: VirtualDisplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window source hears its own window's change reports: a still window, another
    window drawn over it or beside it, and cursor moves grab nothing; drawing in it, hiding,
    showing and closing it are each grabbed. (Uncovering it may be reported: the server
    repaints what was exposed.)"""
    monkeypatch.setenv("DISPLAY", screen.name)
    backend = X11Backend(screen.name)
    try:
        with x_window(300, 200, 160, 120, RED) as (d, window):
            source = backend.open(f"window:{window.id:#x}")
            reads: list[tuple[object, ...]] = []
            pixels = source._pixels  # type: ignore[attr-defined]
            real_read = pixels.read

            def read(*args: object, **kwargs: object) -> np.ndarray:
                reads.append(args)
                return real_read(*args, **kwargs)  # type: ignore[no-any-return]

            monkeypatch.setattr(pixels, "read", read)

            def wait_for_change(what: str) -> np.ndarray:
                deadline = time.monotonic() + 10
                while not source.changed():
                    assert time.monotonic() < deadline, f"{what} was not reported"
                    time.sleep(0.02)
                return source.grab()

            try:
                source.grab()
                settle(source)
                reads.clear()
                with x_window(350, 250, 200, 100, GREEN), x_window(900, 600, 50, 50, GREEN):
                    for i in range(15):
                        xtest.fake_input(d, X.MotionNotify, x=320 + 5 * i, y=220 + 3 * i)
                        d.sync()
                        time.sleep(0.02)
                        assert not source.changed()
                    assert reads == []
                settle(source)
                gc = window.create_gc(foreground=GREEN)
                window.fill_rectangle(gc.id, 10, 10, 20, 20)
                d.sync()
                frame = wait_for_change("drawing in the window")
                assert tuple(frame[15, 15, :3]) == (0, 255, 0)
                assert tuple(frame[100, 100, :3]) == (0, 0, 255)
                settle(source)
                window.unmap()
                d.sync()
                wait_for_change("hiding the window")
                assert source.hidden
                window.map()
                d.sync()
                wait_for_change("showing the window again")
                assert not source.hidden
                settle(source)
            finally:
                closing = source
        wait_for_change("closing the window")
        assert closing.gone
        assert not closing.changed()  # gone: its last picture stands, nothing to read
        closing.close()
    finally:
        backend.close()


def test_a_window_source_grabs_every_tick_in_poll_mode(
    screen: VirtualDisplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", screen.name)
    monkeypatch.setenv(CAPTURE_MODE_ENV, "poll")
    backend = X11Backend(screen.name)
    try:
        with x_window(300, 200, 160, 120, RED) as (_, window):
            source = backend.open(f"window:{window.id:#x}")
            try:
                for _ in range(5):
                    source.grab()
                    time.sleep(0.02)
                    assert source.changed()
            finally:
                source.close()
    finally:
        backend.close()


def test_without_damage_every_tick_grabs_and_recording_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with VirtualDisplay(extensions_off=("DAMAGE",)) as bare:
        assert DamageWatch.open(bare.name) is None
        backend = X11Backend(bare.name)
        try:
            source = backend.open("display:1")
            source.grab()
            assert source.changed() and source.changed()  # no reports: always grab
            source.close()
        finally:
            backend.close()
        monkeypatch.setenv("DISPLAY", bare.name)
        (tmp_path / "home").mkdir(mode=0o700)
        library = Taskerino.open(tmp_path / "home")
        try:
            session = library.start(video_request("display:1", fps=10))
            time.sleep(2.0)
            ended = library.end(session.id)
            stats = library.stats(session.id)
        finally:
            library.close()
        assert ended.video is not None and ended.video.chunking_status == "complete"
        # Every tick grabs; a loaded machine may miss a tick now and then, which is counted.
        assert stats.frames_captured >= 10
        assert stats.frames_dropped <= stats.frames_captured // 10


def test_poll_mode_is_chosen_by_the_environment(
    screen: VirtualDisplay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_MODE_ENV, "poll")
    assert DamageWatch.open(screen.name) is None
    monkeypatch.delenv(CAPTURE_MODE_ENV)
    watch = DamageWatch.open(screen.name)
    assert watch is not None
    watch.close()


def test_only_a_source_asked_for_changes_listens_and_the_last_one_out_closes_the_watch(
    screen: VirtualDisplay,
) -> None:
    backend = X11Backend(screen.name)
    try:
        backend.screenshot("display:1")  # screenshots grab whole: no watch is opened
        assert backend._watch is False
        first, second = backend.open("display:1"), backend.open("display:2")
        for source in (first, second):
            source.grab()
            assert source.changed()  # starts listening, with a whole grab
            source.grab()
        watch = backend._watch
        assert isinstance(watch, DamageWatch)
        first.close()
        assert backend._watch is watch  # the other source still listens
        second.close()
        assert backend._watch is False  # nobody polls it any more: closed
    finally:
        backend.close()
