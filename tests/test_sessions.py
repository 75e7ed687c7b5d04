"""The session lifecycle in-process, on a real X display and a real store."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskerino import heap
from taskerino.errors import InvalidInput, NotFound, RecorderError
from taskerino.models import SessionConfig, on_timeline
from taskerino.recording.base import Finisher, MediaClock, Recorder, RecordingContext
from taskerino.sessions import StartRequest, Taskerino, lifecycle
from taskerino.sessions.configure import configure as validate_config
from taskerino.virtual import VirtualDisplay


@pytest.fixture
def manager(home: Path, xdisplay: VirtualDisplay) -> Iterator[Taskerino]:
    m = Taskerino.open(home)
    yield m
    m.close()


def shots(interval: float = 1.0) -> StartRequest:
    return StartRequest(name="t", config=SessionConfig(screenshot_interval=interval))


def wait_for(check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_screenshots_are_taken_and_attached(manager: Taskerino) -> None:
    session = manager.start(shots(1.0))
    assert session.status == "active"
    wait_for(lambda: len(manager.get(session.id).screenshots) >= 3)
    manager.capture_screenshot(session.id)
    ended = manager.end(session.id)
    assert ended.status == "completed" and ended.end_time is not None
    assert ended.total_duration is not None and ended.total_duration >= 2.0
    offsets = [s.media_offset for s in ended.screenshots]
    assert offsets == sorted(offsets) and offsets[0] < 0.5
    attachments = {
        a.id: a for a in (manager.attachment(s.attachment_id) for s in ended.screenshots)
    }
    for shot in ended.screenshots:
        attachment = attachments[shot.attachment_id]
        assert attachment.type == "image" and attachment.mime_type == "image/webp"
        assert attachment.width == 1920 and attachment.height == 648  # 3200x1080 scaled
        path = manager.attachment_path(attachment)
        assert path is not None and path.read_bytes()[8:12] == b"WEBP"
    # The screen did not change: every screenshot shares one deduplicated file.
    assert len(attachments) == 1
    assert manager.doctor() == []


def test_a_live_recording_gives_free_heap_memory_back_now_and_then(
    manager: Taskerino, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[float] = []

    def release() -> bool:
        released.append(time.monotonic())
        return True

    monkeypatch.setattr(lifecycle, "TRIM_SECONDS", 0.3)
    monkeypatch.setattr(heap, "release", release)
    session = manager.start(shots(60.0))
    wait_for(lambda: len(released) >= 3)
    manager.end(session.id)
    count = len(released)
    time.sleep(1.0)  # three periods more
    assert len(released) == count  # the keeper stopped with the recording


def test_pause_takes_nothing_and_excludes_time(manager: Taskerino) -> None:
    session = manager.start(shots(1.0))
    wait_for(lambda: len(manager.get(session.id).screenshots) >= 1)
    time.sleep(0.5)
    paused = manager.pause(session.id)
    assert paused.status == "paused" and paused.paused_at is not None
    count = len(paused.screenshots)
    time.sleep(2.5)
    assert len(manager.get(session.id).screenshots) == count
    resumed = manager.resume(session.id)
    assert resumed.status == "active" and resumed.total_paused >= 2.4
    wait_for(lambda: len(manager.get(session.id).screenshots) > count)
    ended = manager.end(session.id)
    assert ended.total_duration is not None
    wall = (ended.total_paused or 0) + ended.total_duration
    assert ended.total_duration < wall - 2.3
    # No screenshot is placed inside the paused stretch of the media timeline.
    assert max(s.media_offset for s in ended.screenshots) <= ended.total_duration


def test_end_is_idempotent_and_safe_concurrently(manager: Taskerino) -> None:
    session = manager.start(shots(5.0))
    results = []

    def end() -> None:
        results.append(manager.end(session.id))

    threads = [threading.Thread(target=end) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status for r in results} == {"completed"}
    assert len({r.end_time for r in results}) == 1
    again = manager.end(session.id)
    assert again.end_time == results[0].end_time


def test_end_stops_only_its_own_session(manager: Taskerino) -> None:
    first = manager.start(shots(1.0))
    second = manager.start(shots(1.0))
    manager.end(first.id)
    assert manager.get(second.id).status == "active"
    assert manager.wait(first.id, 0)
    assert not manager.wait(second.id, 0)
    before = len(manager.get(second.id).screenshots)
    wait_for(lambda: len(manager.get(second.id).screenshots) > before)
    manager.end(second.id)


@pytest.mark.parametrize("room", ["plenty", "none"])
def test_ending_on_a_full_disk_frees_the_reserve_even_before_a_write_failed(
    manager: Taskerino, home: Path, monkeypatch: pytest.MonkeyPatch, room: str
) -> None:
    # The disk can fill just before the end, when no recorder has tried to write since:
    # the end frees the reserve all the same, so the last chunk and the ending fit.
    reserve = home / "reserve.bin"
    assert reserve.exists()  # set aside when the library opened
    session = manager.start(shots(5.0))
    if room == "none":
        usage = shutil.disk_usage(home)
        full = usage._replace(used=usage.total, free=0)
        monkeypatch.setattr(shutil, "disk_usage", lambda path: full)
    ended = manager.end(session.id)
    assert ended.status == "completed"
    assert reserve.exists() == (room == "plenty")


def test_stats_of_unknown_session_is_a_clear_error(manager: Taskerino) -> None:
    with pytest.raises(NotFound, match="no session"):
        manager.stats("nope")
    session = manager.start(shots(5.0))
    stats = manager.stats(session.id)
    assert stats.state == "recording"
    manager.end(session.id)
    assert manager.stats(session.id).state == "stopped"


def test_context_items_and_screenshot_annotations(manager: Taskerino) -> None:
    session = manager.start(shots(5.0))
    wait_for(lambda: len(manager.get(session.id).screenshots) >= 1)
    note = manager.add_note(session.id, "looked at the logs")
    ended = manager.end(session.id)
    assert ended.total_duration is not None and note.media_offset <= ended.total_duration
    marker = manager.add_note(session.id, "", type="marker", media_offset=ended.total_duration)
    shot = manager.get(session.id).screenshots[0]
    manager.annotate_screenshot(session.id, shot.id, comment="important", flagged=True)
    loaded = manager.get(session.id)
    assert [c.id for c in loaded.context_items] == [note.id, marker.id]
    assert loaded.screenshots[0].user_comment == "important" and loaded.screenshots[0].flagged
    with pytest.raises(InvalidInput):
        manager.add_note(session.id, "x", type="todo")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        manager.annotate_screenshot(session.id, "nope", flagged=True)


class BrokenRecorder(Recorder):
    kind = "broken"

    def prepare(self, ctx: RecordingContext) -> None:
        raise RecorderError("device is busy")

    def begin(self) -> None:
        raise AssertionError("never begun")

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def stop(self) -> Finisher | None:
        return None


def test_failed_start_leaves_nothing(
    manager: Taskerino, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    from taskerino.recording.screenshots import ScreenshotRecorder
    from taskerino.sessions import lifecycle

    stopped: list[bool] = []

    class Watched(ScreenshotRecorder):
        def stop(self) -> Finisher | None:
            stopped.append(True)
            return super().stop()

    monkeypatch.setattr(
        lifecycle, "build_recorders", lambda config: [Watched(5.0), BrokenRecorder()]
    )
    with pytest.raises(RecorderError, match="device is busy"):
        manager.start(shots())
    assert stopped == [True]
    assert manager.list_sessions() == []
    assert not any((home / "staging").iterdir())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SessionConfig(screenshots=False), "nothing to record"),
        (SessionConfig(screenshot_interval=0.5), "at least 1 second"),
        (SessionConfig(screenshot_interval=float("nan")), "number"),
        (SessionConfig(video=True, sources=["display:abc"]), "display:N"),
        (SessionConfig(video=True, sources=["display:0"]), "display:N"),
        (SessionConfig(video=True, sources=["display:99"]), "available displays"),
        (SessionConfig(video=True, sources=["window:zz"]), "window"),
        (
            SessionConfig(video=True, sources=["test:a", "test:b", "test:c", "test:d", "test:e"]),
            "at most 4",
        ),
        (
            SessionConfig(video=True, sources=["test:a", "test:b"], compositor="passthrough"),
            "exactly one",
        ),
        (SessionConfig(video=True, sources=["test:a"], compositor="mosaic"), "unknown compositor"),
        (SessionConfig(video=True, sources=["test:a"], fps=0), "1 to 60"),
        (SessionConfig(video=True, sources=["test:a"], fps=61), "1 to 60"),
        (SessionConfig(video=True, sources=["test:a"], width=641, height=480), "even"),
        (SessionConfig(video=True, sources=["test:a"], width=0, height=480), "even"),
        (SessionConfig(video=True, sources=["test:a"], width=7682, height=4320), "at most"),
    ],
)
def test_bad_configuration_is_refused(
    xdisplay: VirtualDisplay, config: SessionConfig, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_config(config)


def test_default_compositor_and_source(xdisplay: VirtualDisplay) -> None:
    one = validate_config(SessionConfig(video=True))
    assert one.sources == ["display:1"] and one.compositor == "passthrough"
    two = validate_config(SessionConfig(video=True, sources=["display:1", "test:red"]))
    assert two.compositor == "grid"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0.0, 1e5, allow_nan=False), min_size=2, max_size=8),
    st.integers(0, 6),
)
def test_nothing_on_the_timeline_lies_past_the_end(times: list[float], pause_at: int) -> None:
    """Offsets and the end share one clock and one rounding rule (milliseconds), so an
    offset read at any moment, before the end or after it, is never past the end."""
    moments = sorted(times)
    now = [moments[0]]
    clock = MediaClock(now=lambda: now[0])
    offsets = []
    for i, moment in enumerate(moments[1:-1]):
        now[0] = moment
        if i == pause_at:
            clock.pause()
        offsets.append(on_timeline(clock.offset()))
    now[0] = moments[-1]
    end = clock.end()
    now[0] = moments[-1] + 1.0  # a note that arrives while the recorders stop
    offsets.append(on_timeline(clock.offset()))
    assert all(offset <= end for offset in offsets)


def test_notes_added_while_ending_stay_within_the_session(manager: Taskerino) -> None:
    session = manager.start(shots(5.0))
    notes: list[float] = []
    stop = threading.Event()

    def keep_noting() -> None:
        while not stop.is_set():
            try:
                notes.append(manager.add_note(session.id, "during the end").media_offset)
            except InvalidInput:
                return  # the session ended and the moment is past its end: refused
            time.sleep(0.001)

    writer = threading.Thread(target=keep_noting)
    writer.start()
    time.sleep(0.3)
    ended = manager.end(session.id)
    time.sleep(0.05)
    stop.set()
    writer.join()
    assert ended.total_duration is not None and notes
    loaded = manager.get(session.id)
    assert all(item.media_offset <= ended.total_duration for item in loaded.context_items)
