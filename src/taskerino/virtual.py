"""Virtual hardware for machines without a screen or sound card.

`VirtualDisplay` starts Xvfb with two RandR monitors on one screen (what a laptop with an
external monitor looks like to mss); `VirtualAudio` starts a private PulseAudio server with
a null sink whose monitor is the default source. The demo, the test suite and the
benchmarks use them; a person with a real desktop never needs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .errors import CaptureError

MONITORS = (("LEFT", 1920, 1080, 0), ("RIGHT", 1280, 720, 1920))


def _free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise CaptureError("no free X display number between :90 and :199")


def _wait_for(check: object, what: str, timeout: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise CaptureError(f"{what} did not come up within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class VirtualDisplay:
    """An Xvfb screen of 3200x1080 split into a 1920x1080 and a 1280x720 monitor."""

    def __init__(
        self,
        width: int = 3200,
        height: int = 1080,
        monitors: bool = True,
        extensions_off: tuple[str, ...] = (),
    ) -> None:
        if shutil.which("Xvfb") is None:
            raise CaptureError("Xvfb is not installed (Debian package xvfb)")
        self.number = _free_display()
        self.name = f":{self.number}"
        self._proc = subprocess.Popen(
            [
                "Xvfb",
                self.name,
                "-screen",
                "0",
                f"{width}x{height}x24",
                "-noreset",
                "-nolisten",
                "tcp",
                # A server without some extension (DAMAGE, Composite), as on other machines.
                *(arg for name in extensions_off for arg in ("-extension", name)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        socket = Path(f"/tmp/.X11-unix/X{self.number}")
        _wait_for(lambda: socket.exists() or self._proc.poll() is not None, "Xvfb")
        if self._proc.poll() is not None:
            raise CaptureError(f"Xvfb {self.name} exited at start")
        env = {**os.environ, "DISPLAY": self.name}
        _wait_for(
            lambda: subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0,
            "the X display",
        )
        if monitors:
            for name, w, h, x in MONITORS:
                # Physical sizes keep 96 dpi; `none` means no output is bound to the monitor.
                subprocess.run(
                    [
                        "xrandr",
                        "--setmonitor",
                        name,
                        f"{w}/{round(w * 0.2646)}x{h}/{round(h * 0.2646)}+{x}+0",
                        "none",
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                )

    def close(self) -> None:
        _stop(self._proc)

    def __enter__(self) -> VirtualDisplay:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class VirtualAudio:
    """A private PulseAudio server with a null sink `recsink`; its monitor is the default source.

    `env` holds the variables a client needs (XDG_RUNTIME_DIR, PULSE_SERVER).
    """

    SINK = "recsink"

    def __init__(self) -> None:
        if shutil.which("pulseaudio") is None:
            raise CaptureError("PulseAudio is not installed (Debian package pulseaudio)")
        self.runtime = Path(tempfile.mkdtemp(prefix="taskerino-pulse-"))
        self.runtime.chmod(0o700)
        socket = self.runtime / "pulse" / "native"
        self.env = {
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{socket}",
        }
        env = {**os.environ, **self.env, "HOME": str(self.runtime)}
        self._proc = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "-n",
                "--disable-shm=yes",
                f"--load=module-native-protocol-unix socket={socket}",
                f"--load=module-null-sink sink_name={self.SINK} "
                "sink_properties=device.description=RecSink",
                "--load=module-always-sink",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(
            lambda: subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0,
            "PulseAudio",
        )
        subprocess.run(["pactl", "set-default-sink", self.SINK], env=env, check=True)
        subprocess.run(["pactl", "set-default-source", f"{self.SINK}.monitor"], env=env, check=True)

    def close(self) -> None:
        _stop(self._proc)
        shutil.rmtree(self.runtime, ignore_errors=True)

    def __enter__(self) -> VirtualAudio:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
