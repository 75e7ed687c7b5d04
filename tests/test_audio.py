"""Audio capture against a real PulseAudio server with sound played into its null sinks."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from taskerino.capture.audio import (
    AudioCapture,
    list_audio_devices,
    system_audio_source,
    validate_audio,
)
from taskerino.errors import CaptureError, InvalidInput
from taskerino.media.audio import (
    RATE,
    SegmentInfo,
    SegmentWriter,
    join_audio,
    recover_segments,
)
from taskerino.virtual import VirtualAudio

Audio = npt.NDArray[np.float32]


def _pactl(*args: str) -> str:
    return subprocess.run(
        ["pactl", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _play(
    sink: str, seconds: float, freq: float = 440.0, volume: float = 0.5
) -> subprocess.Popen[bytes]:
    """Play a sine tone into `sink`; wait() on the result returns once it has played."""
    t = np.arange(round(seconds * RATE)) / RATE
    tone = (np.sin(2 * np.pi * freq * t) * volume * 32767).astype(np.int16)
    proc = subprocess.Popen(
        [
            "pacat",
            f"--device={sink}",
            "--format=s16le",
            f"--rate={RATE}",
            "--channels=1",
            "--raw",
            "--latency-msec=20",
        ],
        stdin=subprocess.PIPE,
    )
    stdin = proc.stdin
    assert stdin is not None

    def feed() -> None:  # pacat takes the tone at playback speed: do not block the test
        stdin.write(tone.tobytes())
        stdin.close()

    threading.Thread(target=feed, daemon=True).start()
    return proc


@pytest.fixture(scope="module")
def sinks(pulse: VirtualAudio) -> Iterator[VirtualAudio]:
    """A second null sink `micsink` whose remapped monitor is the "microphone" `mic`.

    Silence is played into both sinks all along, as a sound card renders continuously; an
    idle null sink otherwise sleeps up to 2 s (with its latency then) before its monitor
    delivers anything.
    """
    modules = [
        _pactl(
            "load-module",
            "module-null-sink",
            "sink_name=micsink",
            "sink_properties=device.description=MicSink",
        ),
        _pactl(
            "load-module",
            "module-remap-source",
            "master=micsink.monitor",
            "source_name=mic",
            "source_properties=device.description=TestMic",
        ),
    ]
    keep = [
        subprocess.Popen(
            [
                "pacat",
                f"--device={sink}",
                "--format=s16le",
                f"--rate={RATE}",
                "--channels=1",
                "--raw",
                "--latency-msec=20",
                "/dev/zero",
            ]
        )
        for sink in ("recsink", "micsink")
    ]
    for source in ("recsink.monitor", "mic"):
        _first_data(source)
    yield pulse
    for proc in keep:
        proc.terminate()
        proc.wait()
    for module in reversed(modules):
        _pactl("unload-module", module)


def _first_data(source: str) -> None:
    """Wait until `source` delivers: a null sink wakes from its idle sleep (up to 2 s) late."""
    proc = subprocess.Popen(
        ["parec", f"--device={source}", "--raw", "--latency-msec=20"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.read(1)
    proc.terminate()
    proc.wait()
    proc.stdout.close()


def _read_all(segments: list[SegmentInfo]) -> Audio:
    return np.concatenate([sf.read(str(s.path), dtype="float32")[0] for s in segments])


def _rms(audio: Audio, start: float, end: float) -> float:
    part = audio[round(start * RATE) : round(end * RATE)]
    assert len(part) > 0
    return float(np.sqrt(np.mean(np.square(part))))


def _energy(audio: Audio, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))  # window: little leakage
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(spectrum[np.abs(freqs - freq) < 5].sum() / len(audio))


def _check_segments(segments: list[SegmentInfo], folder: Path) -> None:
    assert [s.index for s in segments] == list(range(len(segments)))
    assert sorted(p.name for p in folder.iterdir()) == [s.path.name for s in segments]
    offset = 0.0
    for seg in segments:
        assert seg.path.name == f"segment-{seg.index:05d}.flac"
        info = sf.info(str(seg.path))
        assert (info.samplerate, info.channels, info.frames) == (RATE, 1, seg.frames)
        assert seg.media_offset == pytest.approx(offset)
        assert seg.duration == pytest.approx(seg.frames / RATE)
        offset += seg.duration
    assert all(s.frames == RATE for s in segments[:-1])  # 1 s segments, the last partial


def test_devices(sinks: VirtualAudio) -> None:
    devices = {d.id: d for d in list_audio_devices()}
    assert devices["recsink.monitor"].kind == "monitor"
    assert devices["recsink.monitor"].default
    assert devices["micsink.monitor"].kind == "monitor"
    assert not devices["micsink.monitor"].default
    assert devices["mic"].kind == "input"
    assert devices["mic"].default  # the default source is a monitor: the input is the mic
    assert devices["mic"].name == "TestMic"
    assert system_audio_source().id == "recsink.monitor"
    chosen = validate_audio(None, True, 30, True)
    assert chosen.mic is not None and chosen.mic.id == "mic"
    assert chosen.system is not None and chosen.system.id == "recsink.monitor"
    assert chosen.balance == 30
    assert validate_audio("TestMic", False, 50, False).mic == devices["mic"]
    assert not validate_audio(None, False, 50, False).enabled


def test_system_audio_speech_and_silence(sinks: VirtualAudio, tmp_path: Path) -> None:
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "recording the system audio"], check=True)
    speech_seconds = sf.info(str(speech)).duration
    folder = tmp_path / "audio"
    closed: list[SegmentInfo] = []
    capture = AudioCapture(
        folder, None, "recsink.monitor", segment_seconds=1.0, on_segment=closed.append
    )
    capture.start()
    assert capture.origin is not None
    time.sleep(0.8)
    played_at = time.monotonic() - capture.origin
    subprocess.run(["paplay", "--device=recsink", str(speech)], check=True)
    time.sleep(3.2 - (time.monotonic() - capture.origin))
    levels = capture.level_dbfs
    stopped_at = time.monotonic()
    last = capture.stop(stopped_at)
    elapsed = stopped_at - capture.origin

    assert last is not None and last == closed[-1]
    _check_segments(closed, folder)
    audio = _read_all(closed)
    assert len(audio) / RATE == pytest.approx(elapsed, abs=0.05)
    assert capture.seconds_recorded == pytest.approx(elapsed, abs=0.05)
    assert capture.overruns == 0 and capture.error is None
    started = capture.started_at_monotonic
    assert started is not None and abs(started - capture.origin) < 0.2
    # The speech is where it was played (within 100 ms), silence before and after it.
    assert _rms(audio, played_at + 0.1, played_at + speech_seconds - 0.1) > 0.01
    assert _rms(audio, 0.0, played_at - 0.1) < 1e-3
    assert _rms(audio, played_at + speech_seconds + 0.15, elapsed) < 1e-3
    onset = np.argmax(np.abs(audio) > 0.01) / RATE
    assert played_at - 0.02 <= onset <= played_at + 0.1
    assert levels < -60  # the recent level is that of the silence after the speech


def test_pause_excludes_audio(sinks: VirtualAudio, tmp_path: Path) -> None:
    closed: list[SegmentInfo] = []
    capture = AudioCapture(
        tmp_path, None, "recsink.monitor", segment_seconds=1.0, on_segment=closed.append
    )
    capture.start()
    assert capture.origin is not None
    time.sleep(1.0)
    paused_at = time.monotonic()
    capture.pause(paused_at)
    assert capture.state == "paused"
    time.sleep(0.2)
    _play("recsink", 1.0).wait()  # played (and drained) entirely during the pause
    time.sleep(1.5 - (time.monotonic() - paused_at))
    resumed_at = time.monotonic()
    capture.resume(resumed_at)
    time.sleep(1.0)
    stopped_at = time.monotonic()
    capture.stop(stopped_at)

    _check_segments(closed, tmp_path)
    expected = stopped_at - capture.origin - (resumed_at - paused_at)
    assert expected == pytest.approx(2.0, abs=0.1)
    audio = _read_all(closed)
    assert len(audio) / RATE == pytest.approx(expected, abs=0.02)
    assert float(np.abs(audio).max()) < 0.01  # the tone of the pause is absent


def test_pause_keeps_sound_on_both_sides(sinks: VirtualAudio, tmp_path: Path) -> None:
    """A tone across the pause appears before and after it, joined at the pause point."""
    closed: list[SegmentInfo] = []
    capture = AudioCapture(
        tmp_path, None, "recsink.monitor", segment_seconds=1.0, on_segment=closed.append
    )
    capture.start()
    assert capture.origin is not None
    tone = _play("recsink", 2.5)
    time.sleep(1.0)
    paused_at = time.monotonic()
    capture.pause(paused_at)
    time.sleep(0.5)
    resumed_at = time.monotonic()
    capture.resume(resumed_at)
    tone.wait()
    time.sleep(0.5)
    capture.stop()
    audio = _read_all(closed)
    pause_offset = paused_at - capture.origin
    assert _rms(audio, pause_offset - 0.4, pause_offset - 0.05) > 0.2
    assert _rms(audio, pause_offset + 0.05, pause_offset + 0.4) > 0.2


@pytest.mark.parametrize("balance", [0, 50, 100])
def test_mix_balance(sinks: VirtualAudio, tmp_path: Path, balance: int) -> None:
    closed: list[SegmentInfo] = []
    capture = AudioCapture(
        tmp_path,
        "mic",
        "recsink.monitor",
        balance=balance,
        segment_seconds=1.0,
        on_segment=closed.append,
    )
    capture.start()
    tones = [_play("micsink", 1.5, 440.0, 0.3), _play("recsink", 1.5, 1000.0, 0.3)]
    for tone in tones:
        tone.wait()
    time.sleep(0.3)
    capture.stop()
    audio = _read_all(closed)
    mic, system = _energy(audio, 440.0), _energy(audio, 1000.0)
    loud = _energy(_play_reference(1.5, 440.0, 0.3), 440.0) * 0.5
    if balance == 0:
        assert mic > loud and system < loud / 20  # leakage of the tone edges only
    elif balance == 100:
        assert system > loud and mic < loud / 20
    else:
        assert mic > loud and system > loud


def _play_reference(seconds: float, freq: float, volume: float) -> Audio:
    """What `_play` sends, padded like a 2 s recording: the scale for `_energy`."""
    t = np.arange(round(seconds * RATE)) / RATE
    tone = (np.sin(2 * np.pi * freq * t) * volume).astype(np.float32)
    return np.concatenate([tone, np.zeros(round(0.5 * RATE), np.float32)])


def test_bad_input(sinks: VirtualAudio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput, match=r"unknown audio device 'nosuch'.*recsink\.monitor"):
        validate_audio("nosuch", False, 50, True)
    for balance in (101, -1):
        with pytest.raises(InvalidInput, match="balance"):
            validate_audio(None, True, balance, True)
    with pytest.raises(InvalidInput):
        AudioCapture(tmp_path, None, None)
    capture = AudioCapture(tmp_path / "x", None, "nosuch.monitor")
    with pytest.raises(CaptureError, match="nosuch"):
        capture.start()
    assert capture.state == "stopped"
    assert not list((tmp_path / "x").iterdir())
    # No sound server at all.
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/none")
    assert list_audio_devices() == []
    with pytest.raises(InvalidInput, match="PulseAudio or PipeWire"):
        system_audio_source()
    with pytest.raises(InvalidInput, match="PulseAudio or PipeWire"):
        validate_audio(None, False, 50, True)


def test_kill_keeps_closed_segments_and_salvages_partial(
    sinks: VirtualAudio, tmp_path: Path
) -> None:
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from taskerino.capture.audio import AudioCapture
        capture = AudioCapture(Path(sys.argv[1]), None, "recsink.monitor", segment_seconds=1.0)
        capture.start()
        print("started", flush=True)
        time.sleep(60)
    """)
    folder = tmp_path / "audio"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    tone = _play("recsink", 3.0, 440.0, 0.3)
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    tone.wait()

    names = sorted(p.name for p in folder.iterdir())
    assert names[:2] == ["segment-00000.flac", "segment-00001.flac"]
    assert names[2:] == ["segment-00002.pcm.partial"]  # the one being written: raw, partial
    for name in names[:2]:
        assert sf.info(str(folder / name)).frames == RATE
    segments = recover_segments(folder)
    assert [s.index for s in segments] == [0, 1, 2]
    assert [s.media_offset for s in segments] == [0.0, 1.0, 2.0]
    assert 0.2 < segments[2].duration < 0.7
    assert sorted(p.name for p in folder.iterdir()) == [f"segment-0000{i}.flac" for i in range(3)]
    audio = _read_all(segments)
    assert _rms(audio, 0.5, len(audio) / RATE - 0.05) > 0.1  # the tone, up to the kill
    # The orphaned parec notices its reader is gone and exits.
    deadline = time.monotonic() + 5
    while "taskerino" in _pactl("list", "source-outputs") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "taskerino" not in _pactl("list", "source-outputs")


def test_join(sinks: VirtualAudio, tmp_path: Path) -> None:
    closed: list[SegmentInfo] = []
    capture = AudioCapture(
        tmp_path / "seg", None, "recsink.monitor", segment_seconds=1.0, on_segment=closed.append
    )
    capture.start()
    _play("recsink", 1.0).wait()
    time.sleep(0.6)
    capture.stop()
    paths = [s.path for s in closed]
    total = sum(s.frames for s in closed) / RATE
    for name in ("all.flac", "all.ogg"):
        duration = join_audio(paths, tmp_path / name)
        assert duration == pytest.approx(total)
        info = sf.info(str(tmp_path / name))
        assert info.frames / info.samplerate == pytest.approx(total, abs=0.01)
    joined, _ = sf.read(str(tmp_path / "all.flac"), dtype="float32")
    assert np.array_equal(joined, _read_all(closed))
    with pytest.raises(InvalidInput):
        join_audio([], tmp_path / "none.flac")
    with pytest.raises(InvalidInput):
        join_audio(paths, tmp_path / "all.mp3")


def test_join_copies_flac_frames_into_mp4(tmp_path: Path) -> None:
    """`.m4a`: the segments' FLAC frames back to back, nothing decoded or encoded; segments of
    any length (not whole FLAC blocks) decode to exactly the samples recorded, in order."""
    closed: list[SegmentInfo] = []
    writer = SegmentWriter(tmp_path, 30_001, closed.append)  # not a multiple of 4096
    rng = np.random.default_rng(1)
    recorded = (rng.normal(0, 3000, 100_000)).astype(np.int16)
    writer.write(recorded)
    writer.close()
    assert [s.frames for s in closed] == [30_001, 30_001, 30_001, 9_997]
    segment_packets = 0
    for s in closed:
        with av.open(str(s.path)) as c:
            segment_packets += sum(1 for p in c.demux(c.streams.audio[0]) if p.size)
    out = tmp_path / "session.m4a"
    assert join_audio([s.path for s in closed], out) == pytest.approx(100_000 / RATE)
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.name == "flac"
        packets = [p for p in c.demux(stream) if p.size]
        assert len(packets) == segment_packets  # copied one for one
        for a, b in itertools.pairwise(packets):
            assert a.pts is not None and a.duration is not None
            assert a.pts + a.duration == b.pts  # contiguous across segment boundaries
    with av.open(str(out)) as c:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert np.array_equal(decoded, recorded)
    # Not a FLAC segment: a clear error and no file left behind.
    wav = tmp_path / "other.wav"
    sf.write(str(wav), recorded[:1000], RATE)
    with pytest.raises(CaptureError, match="not a 48000 Hz mono FLAC segment"):
        join_audio([closed[0].path, wav], tmp_path / "bad.m4a")
    assert not list(tmp_path.glob("bad.m4a*"))
