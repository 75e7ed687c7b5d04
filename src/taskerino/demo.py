"""`python -m taskerino.demo`: record a short session, enrich it, and serve it.

The session shows two terminals with text, speech when audio can be had (espeak-ng into a
private PulseAudio server, recorded as system audio) and a switch of the window in front
half way. Without a screen (no DISPLAY) it is recorded on a virtual display. It is then
enriched (OCR, transcript, chapters, the search index: each stage's progress is shown),
what was found is printed, and the review web app serves it until Ctrl-C (`--no-serve`
ends there instead, for scripts).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from .errors import CaptureError, InvalidInput, NotFound, TaskerinoError
from .models import Session, SessionConfig
from .rules import WEB_PORT, parse_port
from .sessions import StartRequest, Taskerino
from .virtual import VirtualAudio, VirtualDisplay

SPOKEN = "Please retry the quarterly invoice before Friday."
TERMINALS = (
    (
        "Billing console",
        "+40+40",
        [
            "INVOICE RETRY QUEUE",
            "$ billing retry --invoice 4411",
            "invoice 4411 total 129.00 EUR",
            "attempt 1 of 3: gateway timeout",
            "attempt 2 of 3: card declined",
        ],
    ),
    (
        "Deploy console",
        "+980+40",
        [
            "KUBERNETES ROLLOUT",
            "$ kubectl get pods -n api",
            "api-7f9c  Running  0 restarts",
            "canary healthy at 25 percent",
        ],
    ),
)
FONT = ["-fa", "DejaVu Sans Mono", "-fs", "22"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the recording")
    parser.add_argument("--home", default=None, help="data folder (default: the usual one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", default=str(WEB_PORT), help="port to serve on (0: any free)")
    parser.add_argument("--no-serve", action="store_true", help="stop after printing")
    args = parser.parse_args(argv)
    try:
        port = parse_port(args.port)
        with ExitStack() as stack:
            desktop = _desktop(stack)
            library = stack.enter_context(Taskerino.open(args.home))
            session = _record(library, args.seconds, desktop)
            _enrich(library, session.id)
            _report(library, session.id)
            if not args.no_serve:
                _serve(library, session.id, args.host, port)
    except TaskerinoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInput | NotFound) else 1
    return 0


# --- the desktop: screen, terminals, sound ------------------------------------------------
class Desktop:
    """What the demo plays on: terminals whose focus it switches (their window ids, on a
    virtual display only) and a private PulseAudio server to speak into (or None)."""

    def __init__(self, windows: list[str], audio: VirtualAudio | None, folder: Path) -> None:
        self.windows = windows
        self.audio = audio
        self.folder = folder

    def say(self, text: str) -> subprocess.Popen[bytes] | None:
        if self.audio is None:
            return None
        wav = self.folder / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        return subprocess.Popen(
            ["paplay", f"--device={self.audio.SINK}", str(wav)],
            env={**os.environ, **self.audio.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def focus(self, index: int) -> None:
        if index < len(self.windows) and self.windows[index]:
            subprocess.run(["xdotool", "windowfocus", self.windows[index]], check=False)


def _desktop(stack: ExitStack) -> Desktop:
    virtual = not os.environ.get("DISPLAY")
    if virtual:
        display = stack.enter_context(VirtualDisplay())
        os.environ["DISPLAY"] = display.name
        print(f"no screen: recording the virtual display {display.name}")
    windows = [_terminal(stack, *spec) for spec in TERMINALS] if shutil.which("xterm") else []
    if not windows:
        print("xterm is not installed: the demo records the screen as it is")
    folder = Path(tempfile.mkdtemp(prefix="taskerino-demo-"))
    stack.callback(shutil.rmtree, folder, True)
    # A real desktop's window manager decides what is in front: the demo leaves it be.
    return Desktop(windows if virtual else [], _audio(stack), folder)


def _audio(stack: ExitStack) -> VirtualAudio | None:
    """A private PulseAudio server whose sound the recorder records (the person's own
    sound is never touched), or None with the reason printed."""
    missing = [t for t in ("pulseaudio", "pactl", "paplay", "espeak-ng") if not shutil.which(t)]
    if missing:
        print(f"no sound: {', '.join(missing)} not installed; recording without audio")
        return None
    try:
        audio = stack.enter_context(VirtualAudio())
    except CaptureError as exc:
        print(f"no sound: {exc}; recording without audio")
        return None
    os.environ.update(audio.env)
    return audio


def _terminal(stack: ExitStack, title: str, where: str, lines: list[str]) -> str:
    """An xterm showing `lines`; its window id (for focus), or "" when it did not show."""
    text = "\\n".join(lines)
    script = f"printf '\\033[?25l{text}'; exec sleep 3600"
    colours = ["-b", "0", "-fg", "black", "-bg", "white"]
    geometry = f"38x{len(lines) + 1}{where}"
    proc = subprocess.Popen(
        ["xterm", *FONT, *colours, "-T", title, "-geometry", geometry, "-e", "sh", "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(_end, proc)
    if not shutil.which("xdotool"):
        time.sleep(1.0)
        return ""
    found = subprocess.run(
        ["xdotool", "search", "--sync", "--onlyvisible", "--name", f"^{title}$"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return found.stdout.split()[0] if found.stdout.split() else ""


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    if proc.poll() is None:
        proc.kill()


# --- record, enrich, report, serve ---------------------------------------------------------
def _record(library: Taskerino, seconds: float, desktop: Desktop) -> Session:
    audio = desktop.audio is not None
    config = SessionConfig(
        screenshot_interval=3.0,
        video=True,
        sources=["display:1"],
        fps=15,
        width=1920,
        height=1080,
        system_audio=audio,
    )
    request = StartRequest(
        name="Taskerino demo",
        description="A short session recorded by the demo: two terminals, speech, a switch.",
        config=config,
        tags=["demo"],
    )
    desktop.focus(0)
    session = library.start(request)
    sound = " with sound" if audio else ""
    print(f"recording session {session.id} for {seconds:.0f} s{sound} ...")
    started = time.monotonic()
    time.sleep(min(1.5, seconds / 4))
    voice = desktop.say(SPOKEN)
    time.sleep(max(0.0, seconds / 2 - (time.monotonic() - started)))
    if voice is not None:
        voice.wait(15)
    library.add_note(session.id, "halfway: the deploy console comes to the front")
    desktop.focus(1)
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    ended = library.end(session.id)
    print(f"{ended.name} [{ended.status}] {ended.total_duration or 0:.1f} s")
    return ended


def _enrich(library: Taskerino, session_id: str) -> None:
    """Run the enrichment jobs the end queued, printing each stage as it moves on."""
    print("enriching (OCR, transcript, chapters, search index):")
    worker = library.worker(2)
    runner = threading.Thread(target=worker.run, kwargs={"drain": True}, daemon=True)
    started = time.monotonic()
    runner.start()
    shown: dict[str, str] = {}
    while True:
        alive = runner.is_alive()
        for stage, status in library.session_state(session_id).enrichment.items():
            if shown.get(stage) != status.status:
                shown[stage] = status.status
                error = f": {status.error}" if status.error else ""
                print(f"  {time.monotonic() - started:5.1f} s  {stage:<11} {status.status}{error}")
        if not alive:
            break
        time.sleep(0.2)
    runner.join()


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _report(library: Taskerino, session_id: str) -> None:
    session = library.get(session_id)
    print(f"\nfound in session {session.id} (data folder {library.home}):")
    chapters = session.video.chapters if session.video else []
    for c in chapters:
        print(f"  chapter {_clock(c.start_offset)}-{_clock(c.end_offset)}  {c.title}")
    if not chapters:
        print("  no chapters")
    for line in session.transcript[:2]:
        print(f"  said at {_clock(line.start_offset)}: {line.text}")
    if not session.transcript:
        print("  nothing said" + ("" if session.audio_segments else " (no audio recorded)"))
    for word in ("invoice", "rollout"):
        hits = library.search(word, session_id=session.id)
        if hits:
            best = hits[0]
            snippet = " ".join(best.snippet.split())
            print(
                f"  search {word!r}: {len(hits)} hits; best: {best.kind} at "
                f"{_clock(best.media_offset)}: {snippet}"
            )
        else:
            print(f"  search {word!r}: no hit")
    for item in session.context_items:
        print(f"  {item.type} at {_clock(item.media_offset)}: {item.content}")
    problems = library.doctor()
    print("  doctor: " + ("ok" if not problems else "; ".join(problems)))


def _serve(library: Taskerino, session_id: str, host: str, port: int) -> None:
    from .web import serve  # the web stack is loaded only when it is used

    def announce(login: str) -> None:
        base, _, token = login.partition("/?token=")
        print("\nreview it in a browser (Ctrl-C stops the server):")
        print(f"  the demo session: {base}/sessions/{session_id}?token={token}")
        print(f"  every session:    {login}")
        print(
            f"  from another machine: ssh -L {base.rsplit(':', 1)[1]}:127.0.0.1:"
            f"{base.rsplit(':', 1)[1]} THIS-HOST, then open the same address there",
            flush=True,
        )

    serve(
        library,
        host=host,
        port=port,
        announce=announce,
        warn=lambda message: print(f"taskerino: {message}", file=sys.stderr),
    )


if __name__ == "__main__":
    status = main()
    # As `taskerino` ends (cli.run): without the interpreter's teardown, where native
    # libraries' own threads were seen, rarely, to crash once the work was done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
