"""Video recording end to end on Xvfb: real capture, real H.264 files decoded with PyAV."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from Xlib import display

from taskerino.frame import NO_CHANGE, Box, Frame
from taskerino.media import ChunkedEncoder, Compositor, probe_video
from taskerino.models import Session, SessionConfig, parse_time
from taskerino.recording.video import _DropQueue, _Item, same_frame
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualDisplay

from .cli_helpers import blob_files, run, run_json, start, wait_for_session


@pytest.fixture
def manager(home: Path, xdisplay: VirtualDisplay) -> Iterator[Taskerino]:
    m = Taskerino.open(home)
    yield m
    m.close()


def video_request(
    *sources: str, fps: int = 15, size: tuple[int, int] = (640, 360), compositor: str | None = None
) -> StartRequest:
    return StartRequest(
        name="v",
        config=SessionConfig(
            screenshots=False,
            video=True,
            sources=list(sources),
            fps=fps,
            width=size[0],
            height=size[1],
            compositor=compositor,
        ),
    )


def full_video(manager: Taskerino, session: Session) -> Path:
    assert session.video is not None and session.video.full_video_attachment_id
    path = manager.attachment_path(manager.attachment(session.video.full_video_attachment_id))
    assert path is not None
    return path


def decode(path: Path) -> tuple[list[np.ndarray], list[float], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames, times = [], []
        for frame in container.decode(stream):
            assert frame.format.name == "yuv420p"
            frames.append(frame.to_ndarray(format="bgr24"))
            assert frame.pts is not None and frame.time_base is not None
            times.append(float(frame.pts * frame.time_base))
        duration = float(container.duration / av.time_base) if container.duration else 0.0
    return frames, times, duration


def test_records_a_display_at_the_asked_size(manager: Taskerino) -> None:
    session = manager.start(video_request("display:1", fps=10, size=(1280, 720)))
    time.sleep(3.0)
    stats = manager.stats(session.id)
    assert stats.state == "recording" and stats.frames_captured > 0
    ended = manager.end(session.id)
    assert ended.video is not None and ended.video.chunking_status == "complete"
    frames, _, duration = decode(full_video(manager, ended))
    assert frames[0].shape == (720, 1280, 3)
    assert ended.total_duration is not None
    assert abs(duration - ended.total_duration) < 0.5
    assert abs(ended.video.duration - duration) < 0.1
    assert manager.doctor() == []


def test_moving_source_frame_count_and_timeline(manager: Taskerino) -> None:
    session = manager.start(video_request("test:blue", fps=15))
    time.sleep(4.0)
    ended = manager.end(session.id)
    frames, times, duration = decode(full_video(manager, ended))
    assert ended.total_duration is not None and 3.8 < duration < 4.8
    # A moving picture: about fps * seconds frames, within 15 %.
    expected = 15 * ended.total_duration
    assert abs(len(frames) - expected) <= 0.15 * expected
    assert times == sorted(times)
    stats = manager.stats(session.id)
    # A tick missed on a loaded machine is counted (one of about 60 is a warning), never hidden.
    assert stats.frames_dropped <= 1
    assert stats.health == ("healthy" if stats.frames_dropped == 0 else "warning")


def test_static_source_is_not_reencoded_but_keeps_its_timeline(manager: Taskerino) -> None:
    session = manager.start(video_request("test:still-green", fps=15))
    time.sleep(3.0)
    ended = manager.end(session.id)
    frames, _, duration = decode(full_video(manager, ended))
    assert ended.total_duration is not None
    assert abs(duration - ended.total_duration) < 0.4
    live_stats = manager.stats(session.id)
    # Keepalive repeats (4 a second at most) are cheap; nowhere near 15 frames a second.
    assert len(frames) <= 4 * ended.total_duration + 2
    assert live_stats.frames_captured >= 40 and live_stats.frames_dropped <= 1  # a missed tick
    assert frames[-1][180, 320, 1] > 200  # still green at the end


def dominant(frame: np.ndarray, x: int, y: int) -> str:
    b, g, r = (int(v) for v in frame[y, x])
    colours = {
        "red": (0, 0, 255),
        "green": (0, 255, 0),
        "blue": (255, 0, 0),
        "yellow": (0, 255, 255),
        "black": (0, 0, 0),
    }
    return min(
        colours,
        key=lambda c: sum((a - b_) ** 2 for a, b_ in zip(colours[c], (b, g, r), strict=True)),
    )


@pytest.mark.parametrize(
    ("compositor", "places"),
    [
        ("grid", {"red": (160, 90), "green": (480, 90), "blue": (160, 270), "yellow": (480, 270)}),
        (
            "side-by-side",
            {"red": (80, 180), "green": (240, 180), "blue": (400, 180), "yellow": (560, 180)},
        ),
    ],
)
def test_compositors_put_each_source_in_its_place(
    manager: Taskerino, compositor: str, places: dict[str, tuple[int, int]]
) -> None:
    session = manager.start(
        video_request(
            "test:still-red",
            "test:still-green",
            "test:still-blue",
            "test:still-yellow",
            compositor=compositor,
        )
    )
    time.sleep(1.5)
    frames, _, _ = decode(full_video(manager, manager.end(session.id)))
    last = frames[-1]
    for colour, (x, y) in places.items():
        assert dominant(last, x, y) == colour, (compositor, colour)
    if compositor == "side-by-side":
        assert dominant(last, 80, 10) == "black"  # letterbox bar above 16:9 cells


def test_a_composed_picture_is_not_drawn_over_before_it_is_encoded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Encoded pictures go back to the compositor, which draws later ones into them. A slow
    # encoder keeps pictures queued (and drops some): none may change before it is encoded.
    lock = threading.Lock()
    in_flight: list[Frame] = []  # composed, not yet encoded (a dropped one stays here)
    outputs: list[Frame] = []
    changed: list[int] = []
    compose, encode = Compositor.compose, ChunkedEncoder.encode

    def digests() -> list[bytes]:
        return [hashlib.sha256(f.tobytes()).digest() for f in in_flight]

    def checked_compose(
        self: Compositor, frames: Sequence[Frame | None], boxes: Sequence[Box | None] | None = None
    ) -> Frame:
        with lock:
            before = digests()
            out = compose(self, frames, boxes)
            after = digests()
            changed.extend(i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b)
            in_flight.append(out)
            outputs.append(out)
            return out

    def slow_encode(
        self: ChunkedEncoder, frame: Frame, media_time: float, box: Box | None = None
    ) -> None:
        time.sleep(0.12)  # slower than 30 fps: the queue fills
        encode(self, frame, media_time, box)
        with lock:
            del in_flight[next(i for i, f in enumerate(in_flight) if f is frame)]

    monkeypatch.setattr(Compositor, "compose", checked_compose)
    monkeypatch.setattr(ChunkedEncoder, "encode", slow_encode)
    manager = Taskerino.open(home)
    try:
        session = manager.start(
            video_request("test:red", "test:blue", "test:still-green", fps=30, size=(320, 180))
        )
        time.sleep(2.5)
        stats = manager.stats(session.id)
        manager.end(session.id)
    finally:
        manager.close()
    assert stats.frames_dropped > 0  # the queue overflowed
    assert len({id(f) for f in outputs}) < len(outputs)  # buffers were drawn in again
    assert changed == []


def test_window_source_and_closing_window(manager: Taskerino) -> None:
    d = display.Display()
    screen = d.screen()
    window = screen.root.create_window(
        100, 100, 320, 240, 0, screen.root_depth, background_pixel=0xFF0000
    )
    window.set_wm_name("Taskerino video test")
    window.set_wm_class("vtest", "VTest")
    window.map()
    d.sync()
    time.sleep(0.3)
    session = manager.start(video_request(f"window:{window.id:#x}", size=(320, 240)))
    time.sleep(1.5)
    window.destroy()
    d.sync()
    d.close()
    time.sleep(1.5)
    ended = manager.end(session.id)
    assert ended.status == "completed"
    frames, _, duration = decode(full_video(manager, ended))
    assert dominant(frames[0], 160, 120) == "red"
    assert ended.total_duration is not None and duration > ended.total_duration - 0.5


def test_pause_excludes_time_from_the_video(manager: Taskerino) -> None:
    session = manager.start(video_request("test:red", fps=10))
    time.sleep(1.5)
    manager.pause(session.id)
    paused_stats = manager.stats(session.id)
    assert paused_stats.state == "paused"
    time.sleep(2.0)
    manager.resume(session.id)
    time.sleep(1.5)
    ended = manager.end(session.id)
    _, times, duration = decode(full_video(manager, ended))
    assert ended.total_duration is not None and 2.8 < ended.total_duration < 3.8
    assert abs(duration - ended.total_duration) < 0.4
    gaps = np.diff(times)
    assert gaps.max() < 0.5, "paused time must not appear as a gap in the video"


def test_ending_one_session_stops_only_its_recording(manager: Taskerino) -> None:
    first = manager.start(video_request("test:red"))
    second = manager.start(video_request("test:blue"))
    time.sleep(1.0)
    manager.end(first.id)
    before = manager.stats(second.id).frames_captured
    time.sleep(1.0)
    assert manager.stats(second.id).frames_captured > before
    assert manager.stats(first.id).state == "stopped"
    manager.end(second.id)


def test_stats_are_visible_from_another_process(home: Path, xdisplay: VirtualDisplay) -> None:
    proc = start(
        home, "--no-screenshots", "--video", "--source", "test:red", "--size", "640x360", "--json"
    )
    try:
        sid = wait_for_session(home)["id"]
        time.sleep(1.5)
        first = run_json(home, "stats", sid)
        time.sleep(1.5)
        second = run_json(home, "stats", sid)
        assert second["frames_captured"] > first["frames_captured"] > 0
        assert second["state"] == "recording" and second["target_fps"] == 15
        assert second["health"] in ("healthy", "warning", "critical")
        watch = subprocess.run(
            [
                "timeout",
                "2.5",
                *run.__globals__["TASKERINO"],
                "--home",
                str(home),
                "stats",
                sid,
                "--watch",
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        assert len(watch.stdout.strip().splitlines()) >= 2
        assert run(home, "stats", "nope").returncode == 2
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        ended = json.loads(out)
        assert ended["video"]["chunking_status"] == "complete"
        assert ended["attachments"][ended["video"]["full_video_attachment_id"]]["type"] == "video"
    finally:
        proc.kill()
        proc.communicate()


def test_kill_9_of_video_recording_is_playable_to_the_kill(
    tmp_path: Path, xdisplay: VirtualDisplay
) -> None:
    rng = random.Random(99)
    for attempt in range(20):
        home = tmp_path / f"v{attempt}"
        home.mkdir()
        proc = start(
            home,
            "--no-screenshots",
            "--video",
            "--source",
            "test:red",
            "--size",
            "640x360",
            "--fps",
            "10",
        )
        row = wait_for_session(home)
        sid = row["id"]
        time.sleep(rng.uniform(0.3, 3.0))
        proc.kill()
        killed_at = time.time()
        proc.communicate()
        recorded = killed_at - parse_time(row["start_time"]).timestamp()
        rows = run_json(home, "sessions", "list")
        assert rows[0]["status"] == "interrupted"
        shown = run_json(home, "sessions", "show", sid)
        video = shown["video"]
        assert video["chunking_status"] == "complete", (attempt, video)
        path = Path(shown["attachments"][video["full_video_attachment_id"]]["path"])
        frames, _, _ = decode(path)
        assert frames
        # Playable to within 1 s of the kill: where the file ends on the session's timeline
        # (the source is still: its last picture lasts to the moment it was last known
        # still; a slow start-up on a busy machine only delays the first frame).
        probe = probe_video(path)
        end = probe.start + probe.duration
        assert end >= recorded - 1.0, (attempt, end, recorded)
        assert shown["total_duration"] >= recorded - 1.5
        assert run_json(home, "doctor") == {"ok": True, "problems": []}
        assert blob_files(home) == {a["hash"] for a in shown["attachments"].values()}


def test_a_dropped_frame_hands_its_changed_box_to_the_next() -> None:
    """What a dropped frame changed is still to be converted with the frame after it."""
    q = _DropQueue(2)
    frame = np.zeros((4, 4, 4), np.uint8)
    for box in [(0, 0, 2, 2), (10, 10, 2, 2), (20, 20, 2, 2)]:
        q.put(_Item(0.0, 0.0, [frame], [box]))
    assert q.dropped == 1
    head = q.get(0)
    assert isinstance(head, _Item) and head.boxes == [(0, 0, 12, 12)]
    q.put(_Item(0.0, 0.0, [frame], [None]))  # a whole change
    q.put(_Item(0.0, 0.0, [frame], [(30, 30, 1, 1)]))  # the third, dropped, goes into it
    items = [q.get(0), q.get(0)]
    assert [i.boxes for i in items if isinstance(i, _Item)] == [[None], [(30, 30, 1, 1)]]
    # Nothing changed in the dropped frame: the next one's box stands as it was.
    q2 = _DropQueue(1)
    q2.put(_Item(0.0, 0.0, [frame], [NO_CHANGE]))
    q2.put(_Item(0.0, 0.0, [frame], [(1, 2, 3, 4)]))
    last = q2.get(0)
    assert isinstance(last, _Item) and last.boxes == [(1, 2, 3, 4)]


@pytest.mark.parametrize("width", [202, 1500])  # 1500: bands of fewer than 128 rows
def test_same_frame_finds_a_difference_anywhere_and_only_looks_inside_a_box(width: int) -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (300, width, 4), np.uint8)
    assert same_frame(a, a.copy())
    # Rows at the edges of 128-row bands, and of the 87-row bands of the wide frame.
    rows = [0, 86, 87, 88, 127, 128, 129, 174, 175, 255, 256, 261, 262, 299]
    for y, x in zip(rows, [0, 7, width - 1, 100, width // 2] * 3, strict=False):
        b = a.copy()
        b[y, x, 2] ^= 1
        assert not same_frame(a, b)
        assert not same_frame(a, b, (x, y, 1, 1))
        assert not same_frame(a, b, (x // 2, 0, width - x // 2, 300))  # a part, not whole rows
        # A box that leaves the difference out: the caller says nothing changed there.
        assert same_frame(a, b, (0, 0, width, y) if y else (0, 1, width, 299))
    assert not same_frame(a, None) and not same_frame(a, a[:-1])
