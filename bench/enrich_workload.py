"""A scripted work session with speech, on an X display and a PulseAudio sink (for
bench/bench_enrich.py).

Run on its own:  .venv/bin/python bench/enrich_workload.py --display :99 [--seconds 120]
                 [--seed 0] [--out DIR]   (needs PULSE_SERVER for the speech)

Three xterms (DejaVu Sans Mono 10, black on white, as in bench/workload.py) sit in three
quarters of a 1920x1080 screen, each its own application (xterm `-class`), so the activity
track sees an editor, a terminal and a chat:

- "Editor" (`cat`, typed into with `xdotool type`, ~12 characters a second, a pause to
  think after each line);
- "Terminal" (`tail -f` of a log: bursts of 15-30 lines a second for 2-4 s while it is in
  front, then a pause to read it; now and then a line while it is not);
- "Chat" (`tail -f` of a file that gets a message every few seconds while it is in front).

The focus moves to another window (`xdotool windowfocus`, then `windowraise`) every 1.5-3
minutes. Independently, sentences made with espeak-ng are played into the sink
(`paplay --device=recsink`), one after another with pauses, so that about 40 % of the
time is speech: the ground truth for the transcript.

The plan depends only on `seconds` and `seed`; each step runs at a fixed offset from the
start (typing blocks the screen thread, so speech has a thread of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from workload import COLS, DESKTOP, QUARTERS, ROWS, TYPE_DELAY_MS, WORDS

FONT = ["-fa", "DejaVu Sans Mono", "-fs", "10"]
SINK = "recsink"
# (window, application class, title, quarter)
WINDOWS = (
    ("editor", "Editor", "release-notes.md", 1),
    ("terminal", "Terminal", "deploy log: tail -f service.log", 0),
    ("chat", "Chat", "billing team chat", 2),
)
SWITCH_EVERY = (90.0, 180.0)  # seconds between focus changes

# Spoken sentences: plain English around the work, with the workload's words in the slots.
TEMPLATES = (
    "okay so the {a} {b} is failing again and I think it is the {c}",
    "let me check the {a} log before we deploy the new {b}",
    "can you look at the {a} report, the {b} numbers look wrong",
    "I am going to restart the {a} and then review the {b} again",
    "we should move the {a} to the new {b} before friday",
    "the customer says the {a} page shows the old {b}",
    "remember to update the {a} and the {b} in the release notes",
    "it looks like the {a} timed out while the {b} was running",
    "after lunch I will write the tests for the {a} {b}",
    "please send me the {a} numbers for the quarterly {b} review",
    "the {a} queue is growing, maybe the {b} worker is stuck",
    "let us schedule a meeting about the {a} and the {b} tomorrow",
    "I found the problem, the {a} was pointing at the wrong {b}",
    "the {a} build is green now, I will merge the {b} change",
    "we need a backup of the {a} before we migrate the {b}",
    "this {a} error only happens when the {b} is empty",
)


@dataclass
class Step:
    at: float  # seconds from the start of the plan
    kind: str  # "type", "log", "chat", "focus"
    window: str = ""
    text: str = ""


@dataclass
class Utterance:
    at: float  # planned start, seconds from the start of the plan
    text: str
    wav: str = ""
    seconds: float = 0.0
    played_wall: float = 0.0  # time.time() when paplay was started


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _log_line(rng: random.Random, n: int) -> str:
    stamp = f"12:{(n // 60) % 60:02d}:{n % 60:02d}"
    level = rng.choice(("INFO", "WARN", "DEBUG", "ERROR"))
    text = (
        f"{stamp} {level:<5} {rng.choice(WORDS)}-{rng.randint(1, 9)} "
        f"{_sentence(rng, rng.randint(4, 9))} id={rng.randint(1000, 99999)}"
    )
    return text[: COLS - 2]


def plan_screen(seconds: float, seed: int) -> list[Step]:
    """Focus phases of 1.5-3 minutes, each with what that window does while in front."""
    rng = random.Random(seed)
    steps: list[Step] = []
    order = ["editor", "terminal", "chat"]
    phase = 0
    t = 0.5
    line_no = 0
    next_background = rng.uniform(20.0, 40.0)
    while t < seconds - 6.0:
        window = order[phase % len(order)] if phase < 3 else rng.choice(order)
        if phase > 0:
            steps.append(Step(t, "focus", window))
            t += 0.5
        end = min(seconds - 5.0, t + rng.uniform(*SWITCH_EVERY))
        while t < end:
            if window == "editor":
                text = _sentence(rng, rng.randint(4, 10))
                typing = len(text) * TYPE_DELAY_MS / 1000 + 0.3
                if t + typing > end:
                    break
                steps.append(Step(t, "type", window, text))
                t += typing + rng.uniform(2.0, 8.0)
            elif window == "terminal":
                burst, rate = rng.uniform(2.0, 4.0), rng.uniform(15.0, 30.0)
                for i in range(int(burst * rate)):
                    line_no += 1
                    steps.append(Step(t + i / rate, "log", "terminal", _log_line(rng, line_no)))
                t += burst + rng.uniform(8.0, 20.0)
            else:
                who = rng.choice(("ana", "bo", "chen", "dev", "eli"))
                steps.append(
                    Step(t, "chat", window, f"<{who}> {_sentence(rng, rng.randint(5, 12))}")
                )
                t += rng.uniform(4.0, 12.0)
            if window != "terminal" and t >= next_background:
                line_no += 1
                steps.append(Step(t, "log", "terminal", _log_line(rng, line_no)))
                next_background = t + rng.uniform(20.0, 40.0)
        t = max(t, end)
        phase += 1
    steps.sort(key=lambda s: s.at)
    return [s for s in steps if s.at < seconds - 0.5]


def plan_speech(seconds: float, seed: int, folder: Path) -> list[Utterance]:
    """Sentences with pauses between them; each rendered to a WAV file now."""
    rng = random.Random(seed + 1000)
    said: list[Utterance] = []
    t = rng.uniform(2.0, 6.0)
    n = 0
    while True:
        template = rng.choice(TEMPLATES)
        text = template.format(a=rng.choice(WORDS), b=rng.choice(WORDS), c=rng.choice(WORDS))
        wav = folder / f"speech-{n:04d}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        length = float(sf.info(str(wav)).duration)
        if t + length > seconds - 1.0:
            wav.unlink()
            break
        said.append(Utterance(t, text, str(wav), length))
        # A pause of 1-2x the sentence after it: speech 40 % of the time on average.
        t += length * (1.0 + rng.uniform(1.0, 2.0))
        n += 1
    return said


class Desk:
    """The three windows, the plan, and the speech; `run()` returns the manifest."""

    def __init__(
        self,
        display: str,
        audio_env: dict[str, str],
        seconds: float,
        seed: int = 0,
        out: Path | None = None,
    ) -> None:
        for tool in ("xterm", "xdotool", "xsetroot", "espeak-ng", "paplay"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed")
        self.display = display
        self.seconds = seconds
        self.seed = seed
        self.out = out or Path(tempfile.mkdtemp(prefix="taskerino-desk-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "DISPLAY": display}
        self.audio_env = {**os.environ, **audio_env}
        self.steps = plan_screen(seconds, seed)
        self.speech = plan_speech(seconds, seed, self.out)
        self.files = {"terminal": self.out / "service.log", "chat": self.out / "chat.txt"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.wids: dict[str, str] = {}

    def _x(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.env, check=True, capture_output=True)

    def setup(self) -> None:
        subprocess.run(["xsetroot", "-solid", DESKTOP], env=self.env, check=True)
        for path in self.files.values():
            path.write_text("")
        for name, klass, title, quarter in WINDOWS:
            command = ["cat"] if name == "editor" else ["tail", "-n", "+1", "-f"]
            if name in self.files:
                command.append(str(self.files[name]))
            x, y = QUARTERS[quarter]
            self.procs[name] = subprocess.Popen(
                [
                    "xterm",
                    *FONT,
                    "-class",
                    klass,
                    "-geometry",
                    f"{COLS}x{ROWS}+{x}+{y}",
                    "-title",
                    title,
                    "-xrm",
                    "*cursorBlink: false",
                    "-e",
                    *command,
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            while name not in self.wids:
                found = subprocess.run(
                    ["xdotool", "search", "--pid", str(proc.pid)],
                    env=self.env,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                if found:
                    self.wids[name] = found[0]
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"xterm {name} did not appear")
                else:
                    time.sleep(0.05)
        time.sleep(0.5)
        self._x("windowfocus", "--sync", self.wids["editor"])

    def teardown(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = {}

    def _speak(self, start: float, stop: threading.Event) -> None:
        for utterance in self.speech:
            wait = start + utterance.at - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return
            utterance.played_wall = time.time()
            player = subprocess.Popen(
                ["paplay", f"--device={SINK}", utterance.wav],
                env=self.audio_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            player.wait(utterance.seconds + 30)

    def run(self) -> dict[str, Any]:
        """Play the plan (windows must be set up); the manifest (also written to out/)."""
        late = 0.0
        stop = threading.Event()
        start_wall = time.time()
        start = time.monotonic()
        speaker = threading.Thread(target=self._speak, args=(start, stop), daemon=True)
        speaker.start()
        focus: list[dict[str, Any]] = [{"at": 0.0, "wall": start_wall, "window": "editor"}]
        try:
            for step in self.steps:
                wait = start + step.at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    late = max(late, -wait)
                if step.kind in ("log", "chat"):
                    with self.files[step.window].open("a") as f:
                        f.write(step.text + "\n")
                elif step.kind == "type":
                    self._x("type", "--delay", str(TYPE_DELAY_MS), step.text)
                    self._x("key", "Return")
                elif step.kind == "focus":
                    wid = self.wids[step.window]
                    self._x("windowfocus", "--sync", wid)
                    self._x("windowraise", wid)
                    focus.append({"at": step.at, "wall": time.time(), "window": step.window})
            remaining = start + self.seconds - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        finally:
            stop.set()
            speaker.join()
        end_wall = time.time()
        manifest = {
            "display": self.display,
            "seconds": self.seconds,
            "seed": self.seed,
            "steps": len(self.steps),
            "start_wall": start_wall,
            "end_wall": end_wall,
            "max_late_s": late,
            "focus": focus,
            "speech": [asdict(u) for u in self.speech if u.played_wall],
            "speech_seconds": sum(u.seconds for u in self.speech if u.played_wall),
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--display", default=os.environ.get("DISPLAY"))
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.display:
        parser.error("--display (or DISPLAY) is required")
    audio = {k: os.environ[k] for k in ("PULSE_SERVER", "XDG_RUNTIME_DIR") if k in os.environ}
    desk = Desk(args.display, audio, args.seconds, args.seed, args.out)
    desk.setup()
    try:
        manifest = desk.run()
    finally:
        desk.teardown()
    print(json.dumps({k: v for k, v in manifest.items() if k not in ("speech", "focus")}))


if __name__ == "__main__":
    main()
