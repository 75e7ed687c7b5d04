"""Privacy at capture time on a real Xvfb: a window source shows that window alone, and
excluded windows are black in every video frame and screenshot, unnamed in the activity
track and never read by OCR — also when they appear, move or are renamed while recording."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from Xlib import X, Xatom
from Xlib import display as xlib
from Xlib.xobject.drawable import Window

from taskerino.capture import get_backend
from taskerino.capture.x11_pixels import DrawableReader, XcbError
from taskerino.capture.x11_windows import HISTORY, WindowTracker
from taskerino.errors import InvalidInput, TaskerinoError
from taskerino.models import Session, SessionConfig
from taskerino.rules import (
    EXCLUDED_TITLE,
    MAX_EXCLUSIONS,
    check_exclusions,
    exclusion_matcher,
    record_config,
)
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualDisplay

from .cli_helpers import run, run_json
from .enriched import focus
from .test_video import decode, full_video
from .xterm import xterm

# Unique colours, as xterm names them and as BGR in a decoded picture.
VAULT_BG, NOTES_BG = "#ff00ff", "#00ffff"
MAGENTA, CYAN = (255, 0, 255), (255, 255, 0)
ORANGE_PIXEL, MINT_PIXEL = 0xFF8000, 0x00FF80  # X pixel values (24-bit TrueColor)
ORANGE, MINT = (0, 128, 255), (128, 255, 0)
WAIT = 60.0  # generous: the machine may be loaded


def count(frame: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 45) -> int:
    """Pixels within `tolerance` of `bgr` in every channel (H.264 and WebP shift colours)."""
    picture = frame[..., :3].astype(np.int16)
    return int((np.abs(picture - np.array(bgr, np.int16)) <= tolerance).all(axis=2).sum())


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def wait_frames(library: Taskerino, session_id: str, n: int = 4) -> None:
    """Until the recorder has captured `n` more frames (in the state just set up)."""
    start = library.stats(session_id).frames_captured
    wait_until(lambda: library.stats(session_id).frames_captured >= start + n, f"{n} more frames")


def wait_screenshots(library: Taskerino, session_id: str, n: int = 1) -> None:
    start = len(library.get(session_id).screenshots)
    wait_until(lambda: len(library.get(session_id).screenshots) >= start + n, "a screenshot")


def rename(d: xlib.Display, wid: int, title: str) -> None:
    window = d.create_resource_object("window", wid)
    window.set_wm_name(title)
    window.change_property(d.get_atom("_NET_WM_NAME"), d.get_atom("UTF8_STRING"), 8, title.encode())
    d.sync()


def move(d: xlib.Display, wid: int, x: int, y: int) -> None:
    d.create_resource_object("window", wid).configure(x=x, y=y)
    d.sync()


def screenshots(library: Taskerino, session: Session) -> list[np.ndarray]:
    pictures = []
    for shot in session.screenshots:
        path = library.attachment_path(library.attachment(shot.attachment_id))
        assert path is not None
        picture = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert picture is not None
        pictures.append(picture)
    return pictures


# --- the rule book ----------------------------------------------------------------------


def test_globs_match_whole_names_and_regexes_anywhere_ignoring_case() -> None:
    matches = exclusion_matcher(["*keepass*", "re:^bank", "Signal"])
    assert matches(["KeePassXC - Passwords"])
    assert matches(["", "keepassxc", "KeePassXC"])  # by application (WM_CLASS)
    assert matches(["BANKING - Firefox"])
    assert not matches(["My bank - Firefox"])  # anchored with ^
    assert matches(["signal"]) and not matches(["Signal Desktop"])  # a glob is whole
    assert not matches(["", ""])


def test_bad_patterns_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(InvalidInput, match=r"'re:\(' is not a valid regular expression"):
        check_exclusions(["re:("])
    with pytest.raises(InvalidInput, match="needs a regular expression after 're:'"):
        check_exclusions(["re:"])
    with pytest.raises(InvalidInput, match="must not be empty"):
        check_exclusions(["  "])
    with pytest.raises(InvalidInput, match="must not hold control characters"):
        check_exclusions(["a\x07b"])
    with pytest.raises(InvalidInput, match="a list of patterns"):
        check_exclusions("*vault*")
    with pytest.raises(InvalidInput, match=f"at most {MAX_EXCLUSIONS}"):
        check_exclusions([f"w{n}" for n in range(MAX_EXCLUSIONS + 1)])
    with pytest.raises(InvalidInput, match="exclude pattern must be text"):
        record_config(exclude=[3])
    assert check_exclusions(["*a*", "*a*", "re:b"]) == ["*a*", "re:b"]


def test_bad_patterns_leave_nothing_behind(tmp_path: Path, xdisplay: VirtualDisplay) -> None:
    home = tmp_path / "home"
    result = run(home, "record", "--exclude", "re:(", "--duration", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: exclude pattern 're:(' is not a valid regular")
    assert "Traceback" not in result.stderr
    assert not home.exists()  # refused before the data folder was touched
    result = run(home, "settings", "exclude", "add", "re:[")
    assert result.returncode == 2 and result.stderr.startswith("error: exclude pattern")
    assert not home.exists()

    home.mkdir(mode=0o700)
    with Taskerino.open(home) as library:
        config = SessionConfig(exclude=["re:(?<"])
        with pytest.raises(InvalidInput, match="not a valid regular expression"):
            library.start(StartRequest(config=config))
        assert library.list_sessions() == []
        assert not any((home / "staging").glob("*"))


def test_exclude_setting_from_the_command_line(home: Path) -> None:
    assert run_json(home, "settings", "exclude", "list") == []
    assert run_json(home, "settings", "exclude", "add", "*KeePassXC*", "re:bank") == [
        "*KeePassXC*",
        "re:bank",
    ]
    result = run(home, "settings", "exclude", "remove", "*vault*")
    assert result.returncode == 2
    assert "'*vault*' is not an exclude pattern of the settings" in result.stderr
    assert run_json(home, "settings", "exclude", "remove", "re:bank") == ["*KeePassXC*"]
    with Taskerino.open(home) as library:
        assert library.exclusions() == ["*KeePassXC*"]
    ended = run_json(
        home,
        "record",
        "--no-screenshots",
        "--source",
        "test:blue",
        "--exclude",
        "re:^bank",
        "--exclude",
        "*KeePassXC*",
        "--duration",
        "1",
    )
    assert ended["config"]["exclude"] == ["*KeePassXC*", "re:^bank"]  # setting's first, once
    shown = run(home, "sessions", "show", ended["id"])
    assert "excluded windows: *KeePassXC*, re:^bank" in shown.stdout


def test_a_damaged_exclude_setting_stops_recording_before_it_starts(home: Path) -> None:
    with Taskerino.open(home):
        pass
    for stored, error in (
        ('"*vault*"', "setting is damaged"),
        ('["re:("]', "holds a bad pattern"),
    ):
        with sqlite3.connect(home / "taskerino.db") as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES ('exclude', ?)", (stored,))
        db.close()
        with Taskerino.open(home) as library:
            config = SessionConfig(screenshots=False, video=True, sources=["test:blue"])
            with pytest.raises(TaskerinoError, match=error):
                library.start(StartRequest(config=config))
            assert library.list_sessions() == []
    with Taskerino.open(home) as library:  # the bad pattern can be removed
        assert library.change_exclusions(remove=["re:("]) == []


# --- the window tracker -----------------------------------------------------------------


@contextmanager
def x_window(
    x: int, y: int, width: int, height: int, pixel: int, title: str
) -> Iterator[tuple[xlib.Display, Window]]:
    """A mapped top-level window filled with `pixel`, destroyed on exit."""
    d = xlib.Display()
    try:
        window = d.screen().root.create_window(
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


def test_tracker_follows_windows_that_appear_move_are_renamed_and_hide(
    xdisplay: VirtualDisplay,
) -> None:
    tracker = WindowTracker(xdisplay.name, exclusion_matcher(["*vault*"]))
    try:
        assert tracker.excluded_rects() == []
        with x_window(10, 20, 300, 200, ORANGE_PIXEL, "My Vault") as (d, window):
            assert tracker.excluded_rects() == [(10, 20, 300, 200)]
            # Moved between a grab's two ends: both places are hidden for that grab.
            token = tracker.token()
            window.configure(x=500, y=60)
            d.sync()
            assert tracker.hidden_since(token).rects == {(10, 20, 300, 200), (500, 60, 300, 200)}
            assert window.id in tracker.hidden_since(token).windows
            assert tracker.excluded_rects() == [(500, 60, 300, 200)]
            # A long drag while nobody grabbed (screenshots are minutes apart): more moves
            # than the history holds, yet the next grab is masked where the window is,
            # not blacked out whole.
            for i in range(HISTORY + 100):
                window.configure(x=500 + i % 7, y=60)
            window.configure(x=500, y=60)
            d.sync()
            hidden = tracker.hidden_since(tracker.token())
            assert not hidden.everything and hidden.rects == {(500, 60, 300, 200)}
            window.unmap()
            d.sync()
            assert tracker.excluded_rects() == []
            token = tracker.token()
            window.map()
            window.set_wm_name("Shopping list")
            d.sync()
            # Mapped under its old name for a moment: hidden for a grab made meanwhile.
            assert tracker.hidden_since(token).rects == {(500, 60, 300, 200)}
            assert tracker.excluded_rects() == []  # renamed: no longer excluded
            window.change_property(Xatom.WM_CLASS, Xatom.STRING, 8, b"vault\0Vault\0")
            d.sync()
            assert tracker.excluded_rects() == [(500, 60, 300, 200)]  # by application
        assert tracker.excluded_rects() == []  # destroyed
        # A dialog of an excluded window is excluded with it, whatever its own name.
        with (
            x_window(10, 20, 300, 200, ORANGE_PIXEL, "My Vault") as (d, vault),
            x_window(600, 400, 200, 100, ORANGE_PIXEL, "Unlock database") as (e, dialog),
        ):
            assert tracker.excluded_rects() == [(10, 20, 300, 200)]
            dialog.set_wm_transient_for(vault)
            e.sync()
            assert tracker.excluded_rects() == [(10, 20, 300, 200), (600, 400, 200, 100)]
            vault.set_wm_name("Groceries")
            d.sync()
            assert tracker.excluded_rects() == []
        # A window manager's frame: the title is on the client inside it.
        with (
            x_window(700, 300, 420, 340, ORANGE_PIXEL, "") as (d, frame),
            x_window(0, 0, 400, 300, ORANGE_PIXEL, "The Vault") as (e, client),
        ):
            frame.delete_property(Xatom.WM_NAME)
            frame.delete_property(Xatom.WM_CLASS)
            d.sync()
            client.reparent(frame.id, 10, 30)
            e.sync()
            assert tracker.excluded_rects() == [(700, 300, 420, 340)]
            client.set_wm_name("Groceries")
            e.sync()
            assert tracker.excluded_rects() == []
    finally:
        tracker.close()


def test_drawable_pixels_through_shared_memory_and_without(xdisplay: VirtualDisplay) -> None:
    with (
        x_window(50, 50, 64, 48, ORANGE_PIXEL, "small") as (d, small),
        x_window(300, 50, 320, 200, MINT_PIXEL, "large") as (_, large),
    ):
        root = d.screen().root.id
        shared, plain = DrawableReader(xdisplay.name), DrawableReader(xdisplay.name, False)
        try:
            assert shared.shared_memory and not plain.shared_memory
            for reader in (shared, plain):
                assert count(reader.read(small.id, 0, 0, 64, 48), ORANGE) == 64 * 48
                # A larger drawable after a smaller one (the shared segment grows).
                assert count(reader.read(large.id, 0, 0, 320, 200), MINT) == 320 * 200
                # Into a part of a larger frame: only that part is written.
                frame = np.zeros((100, 100, 4), np.uint8)
                reader.read_into(large.id, 0, 0, frame[10:30, 20:60])
                assert count(frame, MINT) == 20 * 40 and count(frame[10:30, 20:60], MINT) == 800
                # Shrunk: scaled out of the server's pixels as the compositor scales. The
                # root from (41, 41) on: both windows' edges cut through 2x2 blocks.
                half = np.zeros((100, 160, 4), np.uint8)
                reader.read_into(root, 41, 41, half, shrink=2)
                whole = reader.read(root, 41, 41, 320, 200)
                expected = cv2.resize(whole, (160, 100), interpolation=cv2.INTER_AREA)
                assert np.array_equal(half, expected)
                assert 0 < count(half, ORANGE, 0) < count(whole, ORANGE, 0) / 4
                with pytest.raises(XcbError):
                    reader.read(small.id, 0, 0, 65, 48)  # beyond its edge
            assert shared.shared_memory  # a bad request does not turn it off
        finally:
            shared.close()
            plain.close()


def test_change_driven_capture_follows_exclusions_that_draw_nothing(
    xdisplay: VirtualDisplay,
) -> None:
    """A display source grabs only what the server reports changed; a window renamed into
    an exclusion changes no pixel, yet from then on it is black."""
    with x_window(100, 100, 200, 100, ORANGE_PIXEL, "Notes") as (d, win):
        backend = get_backend()
        backend.exclude(["*vault*"])
        source = backend.open("display:1")
        try:
            assert count(source.grab(), ORANGE) == 200 * 100
            # Listening to change reports, grabbing what they say, until nothing changes.
            wait_until(lambda: not source.changed() or source.grab() is None, "a still screen")
            win.set_wm_name("My Vault")
            d.sync()
            assert source.changed()
            assert count(source.grab(), ORANGE) == 0
            win.set_wm_name("Notes again")
            d.sync()
            assert source.changed()
            assert count(source.grab(), ORANGE) == 200 * 100
        finally:
            source.close()
            backend.close()


def test_a_shrunk_display_source_blacks_out_every_pixel_an_excluded_window_went_into(
    xdisplay: VirtualDisplay,
) -> None:
    """A display shown at half size is scaled as it is grabbed: each of its pixels is the
    mean of a 2x2 block, so a block an excluded window only touches is black too; a small
    change beside it, patched in, keeps that."""
    with (
        x_window(101, 51, 201, 99, ORANGE_PIXEL, "KeePassXC"),
        x_window(400, 300, 300, 200, MINT_PIXEL, "Notes"),
    ):
        plain, masked = get_backend(), get_backend()
        masked.exclude(["keepassxc"])
        source = masked.open("display:1")
        try:
            assert source.show_at(960, 540) and source.size == (960, 540)

            def expected() -> np.ndarray:
                screen = plain.screenshot("display:1")
                assert count(screen, ORANGE) == 201 * 99  # there, unmasked
                half = cv2.resize(screen, (960, 540), interpolation=cv2.INTER_AREA)
                half[25:75, 50:151] = 0  # rows 51..149 and columns 101..301, halved outward
                return half

            frame = source.grab()
            assert np.array_equal(frame, expected())
            wait_until(lambda: not source.changed() or source.grab() is None, "a still screen")
            with x_window(303, 149, 7, 5, MINT_PIXEL, "a typed character"):
                wait_until(source.changed, "the change reported")
                frame = source.grab()
                assert source.changed_box is not None  # patched in, not grabbed whole
                assert np.array_equal(frame, expected())
        finally:
            source.close()
            masked.close()
            plain.close()


# --- a window source shows that window alone ----------------------------------------------


def test_window_source_records_its_own_pixels_not_what_covers_it(
    home: Path, xdisplay: VirtualDisplay
) -> None:
    events: list[str] = []
    with (
        x_window(200, 200, 640, 360, ORANGE_PIXEL, "Covered") as (d, target),
        x_window(200, 200, 320, 360, MINT_PIXEL, "Cover"),  # on top of its left half
        Taskerino.open(home) as library,
    ):
        library.on_event(lambda sid, message: events.append(message))
        config = SessionConfig(
            screenshots=False,
            video=True,
            sources=[f"window:{target.id:#x}"],
            fps=5,
            width=640,
            height=360,
        )
        session = library.start(StartRequest(name="covered", config=config))
        wait_frames(library, session.id)
        move(d, target.id, 3200 - 200, 600)  # mostly beyond the screen's right edge
        wait_frames(library, session.id)
        target.unmap()  # minimised: its last picture and an event
        d.sync()
        wait_until(lambda: any("is hidden" in e for e in events), "the hidden event")
        target.map()
        d.sync()
        wait_until(lambda: any("visible again" in e for e in events), "the visible event")
        wait_frames(library, session.id)
        ended = library.end(session.id)
        frames, _, _ = decode(full_video(library, ended))
    assert len(frames) >= 3
    for frame in frames:
        assert count(frame, MINT) == 0  # nothing of the window on top
        # The window's own pixels, all of them: the covered half, the part off-screen.
        assert count(frame, ORANGE) > 0.95 * frame.shape[0] * frame.shape[1]


# --- exclusions end to end ----------------------------------------------------------------


def test_excluded_window_never_reaches_video_screenshots_or_store(
    home: Path, xdisplay: VirtualDisplay
) -> None:
    notes_title, vault_title = "Notes - editor", "KeePassXC - Passwords"
    d = xlib.Display()
    with (
        xterm(
            notes_title, ["VISIBLEWORD notes"], x=60, y=60, rows=6, colours=("black", NOTES_BG)
        ) as notes,
        xterm(
            vault_title,
            ["SECRETWORD hunter2"],
            x=1920 + 200,
            y=100,
            rows=6,
            colours=("black", VAULT_BG),
        ) as vault,
        Taskerino.open(home) as library,
    ):
        library.change_exclusions(add=["re:keepass"])  # the setting, for every session
        config = SessionConfig(
            screenshot_interval=1.0,
            video=True,
            sources=["display:1", "display:2"],
            fps=5,
            width=1280,
            height=720,
            exclude=["*password manager*"],  # the session's own, matching nothing here
        )
        session = library.start(StartRequest(name="private", config=config))
        sid = session.id
        focus(vault.wid)
        wait_until(
            lambda: any(a.title == EXCLUDED_TITLE for a in library.get(sid).activity),
            "an excluded window in front",
        )
        wait_screenshots(library, sid)
        move(d, vault.wid, 900, 500)  # to the other monitor
        wait_frames(library, sid)
        rename(d, vault.wid, "Passwords.kdbx - KeePassXC")
        move(d, vault.wid, 1700, 300)  # across both monitors
        wait_frames(library, sid)
        wait_screenshots(library, sid)
        with xterm(
            "KeePassXC - Unlock",
            ["SECRETWORD again"],
            x=1920 + 400,
            y=400,
            rows=6,
            colours=("black", VAULT_BG),
        ):  # appears while recording
            wait_frames(library, sid)
            wait_screenshots(library, sid)
        focus(notes.wid)
        wait_until(
            lambda: any(a.title == notes_title for a in library.get(sid).activity),
            "the notes in front",
        )
        wait_screenshots(library, sid)
        ended = library.end(sid)
        library.worker(1).run(drain=True)
        stored = library.get(sid)
        frames, _, _ = decode(full_video(library, ended))
        shots = screenshots(library, stored)
        hits = library.search("SECRETWORD") + library.search("KeePassXC")
        page = library.session_json(sid)
    d.close()

    assert stored.config.exclude == ["re:keepass", "*password manager*"]
    assert json.dumps(page["config"]["exclude"]) == '["re:keepass", "*password manager*"]'
    # No decoded frame and no screenshot holds a pixel of the excluded windows... (the video
    # holds only changes: blacked-out windows moving over a black desktop change no pixel)
    assert frames and len(shots) >= 4
    assert [count(f, MAGENTA) for f in frames] == [0] * len(frames)
    assert [count(s, MAGENTA) for s in shots] == [0] * len(shots)
    # ...while the rest of the screen is recorded.
    assert sum(count(f, CYAN) > 500 for f in frames) >= len(frames) - 1
    assert all(count(s, CYAN) > 500 for s in shots)
    # The store never names them: the activity says an excluded window was in front.
    titles = [a.title for a in stored.activity]
    assert EXCLUDED_TITLE in titles and notes_title in titles
    assert not any("keepass" in (a.title + a.app).lower() for a in stored.activity)
    assert stored.enrichment["ocr"].status == "done"
    ocr = " ".join(o.text for o in stored.ocr)
    assert "VISIBLEWORD" in ocr  # OCR ran and read what was shown
    assert "SECRETWORD" not in ocr and "hunter2" not in ocr
    assert hits == []


def test_back_end_blacks_excluded_windows_out_of_every_picture(xdisplay: VirtualDisplay) -> None:
    with x_window(100, 100, 200, 100, ORANGE_PIXEL, "KeePassXC") as (d, win):
        win.set_input_focus(X.RevertToParent, X.CurrentTime)
        d.sync()
        backend = get_backend()
        try:
            assert count(backend.screenshot("display:1"), ORANGE) == 200 * 100
            assert backend.focused_window() == ("TaskerinoTest", "KeePassXC")
            backend.exclude(["keepassxc"])
            assert count(backend.screenshot("display:1"), ORANGE) == 0
            assert count(backend.screenshot(), ORANGE) == 0
            source = backend.open(f"window:{win.id:#x}")
            try:
                assert not source.grab().any()  # the window alone: all black
            finally:
                source.close()
            assert backend.focused_window() == ("", EXCLUDED_TITLE)
        finally:
            backend.close()
