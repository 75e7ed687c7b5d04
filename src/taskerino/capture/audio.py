"""Audio capture: microphone and/or system audio, mixed, written as 10 s FLAC segments.

Capture method: one `parec` process per source (pulseaudio-utils; works against PulseAudio
and PipeWire's pulse server), reading raw s16le mono 48 kHz on stdout. `--device` picks the
source explicitly, so a microphone and a monitor can be recorded at once without touching
the process environment (PortAudio's ALSA `pulse` device can only be pointed at a source
through the PULSE_SOURCE variable, read when a stream opens: racy with two streams in one
process). A crashed or missing sound server only kills a child process, never ours.

Format: mono 48 kHz. Speech needs no stereo image, transcription downmixes anyway, and mono
halves the bytes. Segments are FLAC (lossless, ~1.5 ms CPU per second of audio to encode, exact
frame counts, readable everywhere incl. browsers). Opus would be ~7x smaller (~28 MB/h
against ~130-200 MB/h of speech) but costs ~15x the CPU, and Opus segments cannot be joined
or remuxed back to back without re-encoding (each carries its own pre-skip).

Crash safety: the segment being recorded is raw PCM (`segment-00003.pcm.partial`), appended
to as audio arrives; a segment is closed by encoding it to `segment-00003.flac.tmp`, fsync,
rename to `segment-00003.flac`, then removing the partial. So a `kill -9` leaves complete FLAC
files plus at most one raw partial, which `salvage_segment`/`recover_segments` turn into a
segment.

Timing: every source is put on one grid of samples counted from `origin` (monotonic time of
media offset 0, normally the session start); samples are placed by the monotonic time they
were captured (read time minus what was already buffered). Leading silence fills the gap
before the first sample, paused ranges of the grid are cut out, and a source that loses data
(server-side overflow, suspend) or drifts against the monotonic clock is re-aligned, so the
audio timeline stays within a few tens of ms of the video one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import CaptureError, InvalidInput
from ..media.audio import RATE, Samples, SegmentInfo, SegmentWriter

log = logging.getLogger(__name__)

_LATENCY_MS = 100  # fragments of 100 ms: 1/3 the CPU of 20 ms; read times stay exact
_WAIT = 0.5  # how long a silent/late source may hold back the mix before it counts as silence
_NO_SERVER = (
    "needs PulseAudio or PipeWire (pactl and parec from pulseaudio-utils); "
    "no sound server is reachable"
)


@dataclass(frozen=True)
class AudioDevice:
    id: str  # the sound server's source name, stable across restarts
    name: str
    kind: Literal["input", "monitor"]
    default: bool


@dataclass(frozen=True)
class AudioSelection:
    """Validated audio configuration: the devices to record and how to mix them."""

    mic: AudioDevice | None
    system: AudioDevice | None
    balance: int

    @property
    def enabled(self) -> bool:
        return self.mic is not None or self.system is not None


# --- devices -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Server:
    sources: list[tuple[str, str, bool]]  # (name, description, is_monitor)
    default_sink: str | None
    default_source: str | None


def _pactl(*args: str) -> str | None:
    exe = shutil.which("pactl")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _query_server() -> _Server | None:
    listing, info = _pactl("-f", "json", "list", "sources"), _pactl("-f", "json", "info")
    if listing is not None and info is not None:
        try:
            raw: list[dict[str, Any]] = json.loads(listing)
            meta: dict[str, Any] = json.loads(info)
            sources = [
                (
                    str(s["name"]),
                    str(s.get("description") or s["name"]),
                    (s.get("properties") or {}).get("device.class") == "monitor"
                    or str(s["name"]).endswith(".monitor"),
                )
                for s in raw
            ]
            return _Server(sources, meta.get("default_sink_name"), meta.get("default_source_name"))
        except (ValueError, KeyError, TypeError):
            log.debug("pactl's JSON was not understood; reading the short listing")
    # pactl before 16 has no JSON output: the short listing has names only.
    short, text = _pactl("list", "short", "sources"), _pactl("info")
    if short is None or text is None:
        return None
    names = [line.split("\t")[1] for line in short.splitlines() if line.count("\t") >= 1]
    found = dict(re.findall(r"^(Default Sink|Default Source): (.+)$", text, re.M))
    return _Server(
        [(n, n, n.endswith(".monitor")) for n in names],
        found.get("Default Sink"),
        found.get("Default Source"),
    )


def _default_mic(server: _Server) -> str | None:
    inputs = [name for name, _, monitor in server.sources if not monitor]
    if server.default_source in inputs:
        return server.default_source
    return inputs[0] if inputs else None


def _default_monitor(server: _Server) -> str | None:
    monitors = [name for name, _, monitor in server.sources if monitor]
    wanted = f"{server.default_sink}.monitor"
    if wanted in monitors:
        return wanted
    return monitors[0] if monitors else None


def _devices(server: _Server) -> list[AudioDevice]:
    mic, monitor = _default_mic(server), _default_monitor(server)
    return [
        AudioDevice(
            name, desc, "monitor" if is_mon else "input", name == (monitor if is_mon else mic)
        )
        for name, desc, is_mon in server.sources
    ]


def list_audio_devices() -> list[AudioDevice]:
    """The sound server's sources: microphones (`input`) and system audio (`monitor`).

    Empty when no PulseAudio/PipeWire server is reachable.
    """
    server = _query_server()
    return [] if server is None else _devices(server)


def system_audio_source() -> AudioDevice:
    """The monitor of the default sink: what the computer is playing."""
    server = _query_server()
    if server is None:
        raise InvalidInput(f"system audio {_NO_SERVER}")
    for device in _devices(server):
        if device.kind == "monitor" and device.default:
            return device
    raise InvalidInput("system audio: the sound server offers no monitor source to record")


def validate_audio(
    mic: str | None, system_audio: bool, balance: int, microphone: bool
) -> AudioSelection:
    """Resolve and check the audio part of a session's configuration before anything starts.

    `mic` names a source (id from `list_audio_devices`, or its index); giving one implies
    `microphone`. Without one the default input is used, or the default source when the
    server has no other.
    """
    if isinstance(balance, bool) or not isinstance(balance, int) or not 0 <= balance <= 100:
        raise InvalidInput(
            f"balance must be a whole number from 0 (all microphone) to 100 "
            f"(all system audio), not {balance!r}"
        )
    microphone = microphone or mic is not None
    if not microphone and not system_audio:
        return AudioSelection(None, None, balance)
    if shutil.which("parec") is None:
        raise InvalidInput("audio recording needs parec (Debian package pulseaudio-utils)")
    server = _query_server()
    if server is None:
        raise InvalidInput(f"audio recording {_NO_SERVER}")
    devices = _devices(server)
    chosen: AudioDevice | None = None
    if microphone:
        if mic is None:
            name = _default_mic(server) or server.default_source
            chosen = next((d for d in devices if d.id == name), None)
            if chosen is None:
                raise InvalidInput("no microphone: the sound server has no audio source")
        else:
            chosen = next((d for d in devices if mic in (d.id, d.name)), None)
            if chosen is None and mic.isdigit():
                index = _source_index(mic)
                chosen = next((d for d in devices if d.id == index), None)
            if chosen is None:
                available = ", ".join(d.id for d in devices) or "none"
                raise InvalidInput(f"unknown audio device {mic!r}; available: {available}")
    system = system_audio_source() if system_audio else None
    return AudioSelection(chosen, system, balance)


def _source_index(index: str) -> str | None:
    short = _pactl("list", "short", "sources") or ""
    for line in short.splitlines():
        parts = line.split("\t")
        if len(parts) > 1 and parts[0] == index:
            return parts[1]
    return None


# --- capture -----------------------------------------------------------------------------


_READ_BYTES = 65536  # at most this much of `parec`'s output at a time


class _Reader:
    """One `parec` process and the thread that puts its samples on the session grid."""

    def __init__(
        self,
        key: int,
        device: str,
        origin: float,
        out: queue.Queue[tuple[int, int, Samples]],
        capture: AudioCapture,
    ) -> None:
        self.key, self.device, self.origin, self.out, self.capture = (
            key,
            device,
            origin,
            out,
            capture,
        )
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.stopping = False
        self.first_sample: float | None = None  # monotonic time of the first captured sample
        self._tail = b""
        exe = shutil.which("parec")
        if exe is None:
            raise CaptureError("audio recording needs parec (Debian package pulseaudio-utils)")
        # -v only to learn when the stream is connected; its periodic latency lines are drained.
        self.proc = subprocess.Popen(
            [
                exe,
                "-v",
                f"--device={device}",
                "--format=s16le",
                f"--rate={RATE}",
                "--channels=1",
                "--raw",
                f"--latency-msec={_LATENCY_MS}",
                "--client-name=taskerino",
                "--stream-name=session recording",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._threads = [
            threading.Thread(target=self._read, name=f"audio-{device}", daemon=True),
            threading.Thread(target=self._drain, name="audio-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def message(self) -> str:
        lines = [
            ln.strip()
            for ln in re.split(rb"[\r\n]", self._tail)
            if ln.strip() and not ln.startswith(b"Time:")
        ]
        return lines[-1].decode(errors="replace") if lines else "no message"

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 4096):
            self._tail = (self._tail + chunk)[-4096:]
            if b"Stream successfully created" in self._tail:
                self.connected.set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        base = 0.0  # monotonic time of sample 0
        count = shift = 0  # samples received; correction added to their grid position
        window_start, window_min = 0.0, math.inf
        # Read into one buffer and copy out exactly what came: `os.read` made a 64 KiB
        # block and shrank it to the few kB read, every 10-20 ms, and the holes it left
        # in this thread's C heap arena made it grow by some 2 MB an hour.
        buffer = bytearray(_READ_BYTES)
        view = memoryview(buffer)
        odd = 0  # a byte of a sample left over at the start of the buffer
        while True:
            try:
                got = os.readv(fd, [view[odd:]])
            except OSError:
                break
            if not got:
                break
            now = time.monotonic()
            end = odd + got
            data = np.frombuffer(buffer, np.int16, count=end // 2).copy()
            odd = end % 2
            if odd:
                buffer[0] = buffer[end - 1]
            if self.first_sample is None:
                base = now - len(data) / RATE
                self.first_sample, window_start = base, now
            idx = round((base - self.origin) * RATE) + count + shift
            count += len(data)
            try:
                self.out.put_nowait((self.key, idx, data))
            except queue.Full:
                self.capture._count_overrun(len(data))  # mixer stalled: gap becomes silence
            # Lag of the newest sample behind the clock; its minimum over a second is the
            # true offset (single reads may be late). Lost data or clock drift shows as lag.
            window_min = min(window_min, now - base - (count + shift) / RATE)
            if now - window_start >= 1.0:
                if window_min > 0.06:
                    lost = round((window_min - 0.01) * RATE)
                    shift += lost
                    self.capture._count_overrun(lost)
                elif window_min < -0.03:
                    shift += round(window_min * RATE)  # ahead of the clock: overlap is dropped
                window_start, window_min = now, math.inf
        self.ended.set()
        self.connected.set()  # wake a start() waiting on a process that died
        if not self.stopping:
            self.capture._source_failed(self.device, self.message)

    def stop(self) -> None:
        self.stopping = True
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


class _Track:
    """Samples of one source waiting to be mixed, contiguous from grid index `start`."""

    def __init__(self, gain: float) -> None:
        self.gain = gain
        self.start = 0
        self.chunks: list[Samples] = []
        self.size = 0
        self.delivered = 0  # grid index up to which the source has reported
        self.floor = 0  # everything before this has been mixed already

    def put(self, idx: int, data: Samples) -> None:
        self.delivered = max(self.delivered, idx + len(data))
        if idx < self.floor:
            data, idx = data[self.floor - idx :], self.floor
        end = self.start + self.size
        if self.size and idx < end:
            data, idx = data[end - idx :], end
        if not len(data):
            return
        if not self.size:
            self.start = idx
        elif idx > end:  # samples lost upstream: silence keeps the timeline
            self.chunks.append(np.zeros(idx - end, np.int16))
            self.size += idx - end
        self.chunks.append(data)
        self.size += len(data)

    def take(self, a: int, b: int) -> npt.NDArray[np.float32]:
        out = np.zeros(b - a, np.float32)
        self.floor = b
        if not self.size:
            return out
        data = np.concatenate(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        lo, hi = max(a, self.start), min(b, self.start + self.size)
        if hi > lo:
            out[lo - a : hi - a] = data[lo - self.start : hi - self.start] * (self.gain / 32768)
        rest = data[max(b - self.start, 0) :]
        self.chunks, self.size, self.start = (
            ([rest] if len(rest) else []),
            len(rest),
            max(b, self.start),
        )
        return out


class AudioCapture:
    """Records the microphone and/or the system audio into segments in `folder`.

    `balance`: 0 = only the microphone, 100 = only the system audio, 50 = both at full level.
    `origin`: monotonic time of media offset 0 (the session start); default: when `start()`
    is called. `on_segment` is called from a background thread for each closed segment.
    """

    def __init__(
        self,
        folder: Path,
        mic: str | None,
        system: str | None,
        balance: int = 50,
        segment_seconds: float = 10.0,
        on_segment: Callable[[SegmentInfo], None] | None = None,
        origin: float | None = None,
    ) -> None:
        if mic is None and system is None:
            raise InvalidInput("audio capture needs a microphone or system audio")
        if not 0 <= balance <= 100:
            raise InvalidInput(f"balance must be from 0 to 100, not {balance}")
        if not segment_seconds > 0:
            raise InvalidInput(f"segment length must be positive, not {segment_seconds}")
        self.folder = Path(folder)
        self.origin = origin
        self._devices = [d for d in (mic, system) if d is not None]
        if mic is not None and system is not None:
            # Full level up to the middle, then fading: 50 keeps both voices at full volume.
            self._gains = [min(1.0, (100 - balance) / 50), min(1.0, balance / 50)]
        else:
            self._gains = [1.0]
        self._on_segment = on_segment
        self._writer = SegmentWriter(
            self.folder, max(1, round(segment_seconds * RATE)), self._closed
        )
        self._queue: queue.Queue[tuple[int, int, Samples]] = queue.Queue(maxsize=1000)
        self._readers: list[_Reader] = []
        self._tracks = [_Track(g) for g in self._gains]
        self._lock = threading.Lock()
        self._pauses: list[list[int]] = []  # [start, end) on the grid; end -1 while paused
        self._stop_at: int | None = None
        self._mixer: threading.Thread | None = None
        self._emitted = 0  # grid index up to which the mix is done
        self._final: SegmentInfo | None = None
        self._level = -100.0
        self._overruns = 0
        self._frames_lost = 0
        self._error: str | None = None
        self.state: Literal["new", "recording", "paused", "stopped"] = "new"

    # public state ----------------------------------------------------------------------

    @property
    def started_at_monotonic(self) -> float | None:
        """Monotonic time of the first captured sample (None before any arrived)."""
        times = [r.first_sample for r in self._readers if r.first_sample is not None]
        return min(times) if times else None

    @property
    def level_dbfs(self) -> float:
        """RMS level of the last ~100 ms recorded, in dBFS (-100 for silence)."""
        return self._level

    @property
    def overruns(self) -> int:
        """Times audio was lost (server-side overflow, stalled mixer); filled with silence."""
        return self._overruns

    @property
    def frames_lost(self) -> int:
        return self._frames_lost

    @property
    def seconds_recorded(self) -> float:
        return self._writer.total / RATE

    @property
    def open_segment_bytes(self) -> int:
        """Bytes of the segment being recorded (raw PCM on disk until it closes)."""
        return self._writer.current * 2

    @property
    def error(self) -> str | None:
        """Why a source or the writer failed; the recording goes on with silence for it."""
        return self._error

    # control ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.state != "new":
            raise CaptureError("audio capture already started")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.origin is None:
            self.origin = time.monotonic()
        try:
            for key, device in enumerate(self._devices):
                try:
                    reader = _Reader(key, device, self.origin, self._queue, self)
                except OSError as exc:
                    raise CaptureError(f"cannot start parec: {exc}") from exc
                self._readers.append(reader)
                if not reader.connected.wait(10) or reader.ended.is_set():
                    reader.stop()
                    raise CaptureError(f"cannot record audio from {device!r}: {reader.message}")
        except BaseException:
            for reader in self._readers:
                reader.stop()
            self.state = "stopped"
            raise
        self.state = "recording"
        self._mixer = threading.Thread(target=self._mix, name="audio-mixer", daemon=True)
        self._mixer.start()

    def pause(self, at: float | None = None) -> None:
        """Stop recording from `at` (monotonic, default now) on; the timeline stops too."""
        with self._lock:
            if self.state != "recording":
                return
            self._pauses.append([max(self._grid(at), self._emitted), -1])
            self.state = "paused"

    def resume(self, at: float | None = None) -> None:
        with self._lock:
            if self.state != "paused":
                return
            self._pauses[-1][1] = max(self._grid(at), self._pauses[-1][0])
            self.state = "recording"

    def stop(self, at: float | None = None) -> SegmentInfo | None:
        """Record up to `at` (default now), close the last partial segment and report it."""
        if self.state in ("new", "stopped"):  # stopping twice reports the same segment
            self.state = "stopped"
            return self._final
        with self._lock:
            self._stop_at = max(self._grid(at), self._emitted)
        assert self._mixer is not None
        self._mixer.join()
        for reader in self._readers:
            reader.stop()
        self.state = "stopped"
        return self._final

    # internals -------------------------------------------------------------------------

    def _grid(self, at: float | None) -> int:
        assert self.origin is not None
        return max(0, round(((time.monotonic() if at is None else at) - self.origin) * RATE))

    def _count_overrun(self, frames: int) -> None:
        self._overruns += 1
        self._frames_lost += frames
        log.warning("audio: %d frames lost, filled with silence", frames)

    def _source_failed(self, device: str, message: str) -> None:
        self._error = f"audio source {device!r} stopped: {message}"
        log.error("%s", self._error)

    def _closed(self, info: SegmentInfo) -> None:
        # Reported, not kept: an hour holds 360 segments, and their list would grow.
        if self._on_segment is not None:
            try:
                self._on_segment(info)
            except Exception:  # the callback's failure must not stop the recording
                log.exception("audio: on_segment callback failed for %s", info.path)

    def _mix(self) -> None:
        failed = False
        while True:
            try:
                item: tuple[int, int, Samples] | None = self._queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            while item is not None:
                self._tracks[item[0]].put(item[1], item[2])
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            with self._lock:
                stop_at, done = self._stop_at, self._emitted
                now = self._grid(None)
                # Wait for every source, but not longer than _WAIT for a silent or dead one.
                ready = min(
                    now, *(max(t.delivered, now - round(_WAIT * RATE)) for t in self._tracks)
                )
                if stop_at is not None:
                    ready = min(ready, stop_at)
                ready = max(ready, done)
                kept = self._kept(done, ready)
                self._emitted = ready
            if ready > done:
                mixed = self._tracks[0].take(done, ready)
                for track in self._tracks[1:]:
                    mixed += track.take(done, ready)
                parts = [mixed[a - done : b - done] for a, b in kept]
                if parts and not failed:
                    block = np.concatenate(parts)
                    rms = float(np.sqrt(np.mean(np.square(block)))) if len(block) else 0.0
                    self._level = max(-100.0, 20 * math.log10(rms)) if rms > 0 else -100.0
                    pcm = (np.clip(block, -1.0, 32767 / 32768) * 32768).astype(np.int16)
                    try:
                        self._writer.write(pcm)
                    except (OSError, RuntimeError) as exc:  # disk full: keep what was written
                        failed = True
                        self._error = f"audio segment could not be written: {exc}"
                        log.error("%s", self._error)
            if stop_at is not None and self._emitted >= stop_at:
                break
        try:
            self._final = self._writer.close()
        except (OSError, RuntimeError) as exc:
            self._error = f"last audio segment could not be written: {exc}"
            log.error("%s", self._error)

    def _kept(self, a: int, b: int) -> list[tuple[int, int]]:
        """Sub-ranges of [a, b) outside every pause."""
        ranges = [(a, b)]
        for start, end in self._pauses:
            end = b if end < 0 else end
            ranges = [
                r
                for lo, hi in ranges
                for r in ((lo, min(hi, start)), (max(lo, end), hi))
                if r[1] > r[0]
            ]
        return ranges
