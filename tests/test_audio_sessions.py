"""Audio inside sessions: segments, the joined file, sync with the video, pause and kills."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from Xlib import display

from taskerino.media.audio import RATE
from taskerino.models import Session, SessionConfig, parse_time
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualAudio, VirtualDisplay

from .cli_helpers import run, run_json, start, wait_for_session
from .test_audio import _first_data, _play


@pytest.fixture(scope="module")
def sound(pulse: VirtualAudio) -> Iterator[VirtualAudio]:
    """Silence played into `recsink` all along, as a sound card renders continuously."""
    keep = subprocess.Popen(
        [
            "pacat",
            "--device=recsink",
            "--format=s16le",
            f"--rate={RATE}",
            "--channels=1",
            "--raw",
            "--latency-msec=20",
            "/dev/zero",
        ]
    )
    _first_data("recsink.monitor")
    yield pulse
    keep.terminate()
    keep.wait()


@pytest.fixture
def manager(home: Path, xdisplay: VirtualDisplay, sound: VirtualAudio) -> Iterator[Taskerino]:
    m = Taskerino.open(home)
    yield m
    m.close()


def audio_of(manager: Taskerino, session: Session) -> np.ndarray:
    assert session.audio_attachment_id is not None
    path = manager.attachment_path(manager.attachment(session.audio_attachment_id))
    assert path is not None
    with av.open(str(path)) as container:  # FLAC frames in an MP4: libsndfile cannot read it
        assert container.streams.audio[0].codec_context.sample_rate == RATE
        data = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(data).astype(np.float32) / 32768


def rms(audio: np.ndarray, start: float, end: float) -> float:
    part = audio[round(start * RATE) : round(end * RATE)]
    return float(np.sqrt(np.mean(np.square(part))))


def test_segments_cover_the_session_and_hold_the_sound(manager: Taskerino) -> None:
    session = manager.start(
        StartRequest(config=SessionConfig(screenshots=False, system_audio=True))
    )
    time.sleep(2.0)
    tone = _play("recsink", 2.0)
    tone.wait()
    time.sleep(9.0)
    stats = manager.stats(session.id)
    assert stats.audio["audio_seconds"] > 10.0
    ended = manager.end(session.id)
    assert ended.total_duration is not None
    segments = ended.audio_segments
    assert len(segments) == 2  # one full 10 s segment and the partial last one
    assert segments[0].media_offset == 0.0 and segments[0].duration == pytest.approx(10.0)
    assert segments[1].media_offset == pytest.approx(10.0, abs=0.01)
    total = sum(s.duration for s in segments)
    assert abs(total - ended.total_duration) < 0.3
    audio = audio_of(manager, ended)
    assert len(audio) / RATE == pytest.approx(total, abs=0.05)
    assert rms(audio, 2.5, 3.5) > 0.1  # the tone
    assert rms(audio, 6.0, 9.0) < 0.01  # silence
    for segment in segments:
        attachment = manager.attachment(segment.attachment_id)
        assert attachment.type == "audio" and attachment.mime_type == "audio/flac"
    assert ended.audio_attachment_id is not None
    joined = manager.attachment(ended.audio_attachment_id)
    assert joined.mime_type == "audio/mp4"
    assert manager.doctor() == []


class _Ear:
    """An independent listener on the sink's monitor: when a loud sound arrived there
    (monotonic time), read with 10 ms fragments. What the recorder should place the sound
    at, measured without its code."""

    def __init__(self) -> None:
        self.heard: float | None = None
        self._proc = subprocess.Popen(
            ["parec", "--device=recsink.monitor", "--format=s16le", f"--rate={RATE}",
             "--channels=1", "--raw", "--latency-msec=10"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        assert self._proc.stdout is not None
        fd, odd = self._proc.stdout.fileno(), b""
        while chunk := os.read(fd, 4096):
            now = time.monotonic()
            chunk, odd = odd + chunk, b""
            if len(chunk) % 2:
                chunk, odd = chunk[:-1], chunk[-1:]
            samples = np.frombuffer(chunk, np.int16)
            loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 0.3 * 32768)
            if len(loud) and self.heard is None:
                self.heard = now - (len(samples) - loud[0]) / RATE

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait()
        self._thread.join(5)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


@pytest.mark.parametrize("fps", [15, 30])
def test_sound_and_picture_are_in_sync(manager: Taskerino, fps: int) -> None:
    """A full-screen window mapped, then a tone started, from one process; in the joined
    MP4 the picture change and the tone onset are as far apart as they really were (the
    window's map and the tone's arrival on the monitor, timed here), give or take one
    frame interval: a change is grabbed at the next tick, stamped with the grab's time."""
    session = manager.start(
        StartRequest(
            config=SessionConfig(
                screenshots=False,
                system_audio=True,
                video=True,
                sources=["display:1"],
                fps=fps,
                width=960,
                height=540,
            )
        )
    )
    ear = _Ear()
    try:
        time.sleep(2.0)
        d = display.Display()
        screen = d.screen()
        window = screen.root.create_window(
            0, 0, 1920, 1080, 0, screen.root_depth, background_pixel=0xFFFFFF
        )
        window.map()
        d.sync()
        mapped = time.monotonic()
        _play("recsink", 1.0, volume=0.8).wait()
        time.sleep(1.0)
        window.destroy()
        d.close()
    finally:
        ear.close()
    ended = manager.end(session.id)
    assert ear.heard is not None
    assert ended.video is not None and ended.video.full_video_attachment_id
    path = manager.attachment_path(manager.attachment(ended.video.full_video_attachment_id))
    assert path is not None
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 1
        picture_at = None
        for frame in container.decode(video=0):
            if frame.to_ndarray(format="gray").mean() > 200:
                assert frame.pts is not None and frame.time_base is not None
                picture_at = float(frame.pts * frame.time_base)
                break
        container.seek(0)
        sound_at = None
        for aframe in container.decode(audio=0):
            samples = aframe.to_ndarray().reshape(-1)
            loud = np.flatnonzero(np.abs(samples.astype(np.float32)) > 0.3 * 32768)
            if len(loud):
                assert aframe.pts is not None and aframe.time_base is not None
                sound_at = float(aframe.pts * aframe.time_base) + loud[0] / aframe.sample_rate
                break
    assert picture_at is not None and sound_at is not None
    # How much later the sound came than the picture: in the file, and really.
    error = (sound_at - picture_at) - (ear.heard - mapped)
    # The picture shows at the first tick after the map (0 to one interval late); the
    # margin absorbs a loaded machine's late ticks and slow reads.
    margin = 0.06
    assert -(1 / fps + margin) <= error <= margin, (fps, error, sound_at, picture_at)


def test_pause_excludes_audio(manager: Taskerino) -> None:
    session = manager.start(
        StartRequest(config=SessionConfig(screenshots=False, system_audio=True))
    )
    time.sleep(1.5)
    manager.pause(session.id)
    _play("recsink", 1.5).wait()  # played while paused: must not be recorded
    manager.resume(session.id)
    time.sleep(1.5)
    ended = manager.end(session.id)
    assert ended.total_duration is not None and 2.7 < ended.total_duration < 3.8
    audio = audio_of(manager, ended)
    assert len(audio) / RATE == pytest.approx(ended.total_duration, abs=0.3)
    assert float(np.abs(audio).max()) < 0.02


def test_kill_9_keeps_the_audio(
    tmp_path: Path, sound: VirtualAudio, xdisplay: VirtualDisplay
) -> None:
    for attempt, lived in enumerate((1.0, 2.5, 4.0)):
        home = tmp_path / f"a{attempt}"
        home.mkdir()
        proc = start(
            home,
            "--no-screenshots",
            "--system-audio",
            "--video",
            "--source",
            "test:red",
            "--size",
            "640x360",
        )
        row = wait_for_session(home)
        time.sleep(lived)
        proc.kill()
        killed_at = time.time()
        _, err = proc.communicate()
        recorded = killed_at - parse_time(row["start_time"]).timestamp()
        shown = run_json(home, "sessions", "show", row["id"])
        assert shown["status"] == "interrupted", (attempt, err)
        total = sum(s["duration"] for s in shown["audio_segments"])
        assert total >= recorded - 1.0, (attempt, total, recorded, err, shown["audio_segments"])
        audio = shown["attachments"][shown["audio_attachment_id"]]
        assert Path(audio["path"]).is_file()
        video = shown["attachments"][shown["video"]["full_video_attachment_id"]]
        with av.open(video["path"]) as container:
            assert len(container.streams.audio) == 1
        assert run_json(home, "doctor") == {"ok": True, "problems": []}


def test_audio_bad_input(home: Path, sound: VirtualAudio, tmp_path: Path) -> None:
    result = run(home, "record", "--duration", "1", "--mic", "no-such-mic")
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "no-such-mic" in result.stderr
    for balance in ("101", "-1", "half"):
        result = run(home, "record", "--system-audio", "--balance", balance)
        assert result.returncode == 2 and result.stderr.startswith("error: ")
    no_server = run(
        home,
        "record",
        "--duration",
        "1",
        "--system-audio",
        env={"PULSE_SERVER": f"unix:{tmp_path}/none"},
    )
    assert no_server.returncode == 2
    assert "PulseAudio or PipeWire" in no_server.stderr and "Traceback" not in no_server.stderr
    assert run_json(home, "sessions", "list") == []
    data = run_json(home, "sources")
    assert any(d["id"] == "recsink.monitor" and d["kind"] == "monitor" for d in data["audio"])
    assert json.dumps(data)
