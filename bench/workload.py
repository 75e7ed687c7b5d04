"""A scripted, deterministic desktop workload on an X display (for bench/bench_video.py).

Run on its own:  .venv/bin/python bench/workload.py --display :99 [--seconds 60] [--seed 0]
                 [--out DIR]   (DIR gets the checkpoint screenshots and manifest.json)

Three xterms (DejaVu Sans Mono 10, black on white) sit in three of the four quarters of
the 1920x1080 monitor at (0, 0) (`display:1`), on a plain dark desktop (xsetroot; Xvfb's
default weave pattern is nothing like a real desktop and would dominate the bytes):

- "log": `tail -f` of a file the workload appends seeded log lines to, in bursts of
  scrolling (25-40 lines a second for 3-5 s);
- "editor": `cat`, typed into with `xdotool type` (real keystrokes through XTEST, ~12
  characters a second); the tty echoes each line and cat prints it again;
- "notes": `tail -f` of a second file that gets a line at each window switch.

Window switches raise a window and move it into the free quarter (windows never overlap
at rest, so what each one shows is known exactly). Idle stretches (4-5 s, nothing changes)
follow the bursts; in the middle of each, a checkpoint: a raw screenshot of display:1
(mss, saved as PNG) and the words the three terminals show at that moment (the
workload's own model of each terminal: its last rows-1 lines), the ground truth for OCR.

The plan (step times, text, moves) depends only on `seconds` and `seed`, and every step
is scheduled at a fixed offset from the start, so two runs show the same thing at the
same moments.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import mss
import numpy as np

MONITOR = {"left": 0, "top": 0, "width": 1920, "height": 1080}
FONT = ["-fa", "DejaVu Sans Mono", "-fs", "10"]
COLS, ROWS = 118, 31  # fits a 960x540 quarter at 100 dpi (8x17 px cells)
QUARTERS = [(0, 0), (960, 0), (0, 540), (960, 540)]
DESKTOP = "#2e3440"
TYPE_DELAY_MS = 80

_WORD_TEXT = (
    "account adapter alpha archive backup balance batch beta billing branch buffer cache "
    "camera channel checkout client cluster commit config cursor customer dashboard "
    "database delta deploy device digest display docker editor engine export feature "
    "filter folder gamma gateway graph handler header import index invoice journal "
    "kernel ledger library locale manager market memory message meeting migrate module "
    "monitor network notebook option order output packet parser partner payment pipeline "
    "planner plugin policy portal printer profile project query queue record refund "
    "region release report request review router sample schema screen script search "
    "server service session shipping signal socket source status storage stream summary "
    "supplier switch system ticket timeline token tracker upload vendor version video "
    "volume warehouse webhook widget worker"
)
WORDS = _WORD_TEXT.split()
LEVELS = ("INFO", "WARN", "DEBUG", "ERROR")


@dataclass
class Step:
    at: float  # seconds from the start of the plan
    kind: str  # "log", "type", "note", "move", "checkpoint"
    text: str = ""
    window: str = ""
    quarter: int = -1
    name: str = ""


@dataclass
class Checkpoint:
    name: str
    at: float  # planned offset
    wall: float  # time.time() when the screenshot was taken
    offset: float  # actual offset from the start of the plan
    image: str  # PNG path
    words: list[str] = field(default_factory=list)


def words_of(text: str) -> list[str]:
    """Case-folded alphanumeric tokens of two characters or more (the OCR comparison unit)."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) >= 2]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def plan(seconds: float, seed: int) -> list[Step]:
    """The whole timeline: cycles of scroll burst, idle, typing, window switch, idle."""
    rng = random.Random(seed)
    steps: list[Step] = []
    t = 0.5
    line_no = 0
    cycle = 0
    free = 3  # the quarter no window occupies
    where = {"log": 0, "editor": 1, "notes": 2}
    while True:
        # Scroll burst in the log window.
        burst = rng.uniform(3.0, 5.0)
        rate = rng.uniform(25.0, 40.0)
        if t + burst + 4.0 > seconds:
            break
        for i in range(int(burst * rate)):
            line_no += 1
            stamp = f"12:{(line_no // 60) % 60:02d}:{line_no % 60:02d}"
            text = (
                f"{stamp} {rng.choice(LEVELS):<5} {rng.choice(WORDS)}-{rng.randint(1, 9)} "
                f"{_sentence(rng, rng.randint(4, 9))} id={rng.randint(1000, 99999)}"
            )
            steps.append(Step(t + i / rate, "log", text=text[: COLS - 2]))
        t += burst
        t = _idle(steps, t, rng, seconds, f"c{cycle}a")
        # Typing into the editor.
        lines = [_sentence(rng, rng.randint(4, 7)) for _ in range(rng.randint(1, 2))]
        for text in lines:
            if t + len(text) * TYPE_DELAY_MS / 1000 + 1.0 > seconds:
                break
            steps.append(Step(t, "type", text=text, window="editor"))
            t += len(text) * TYPE_DELAY_MS / 1000 + 0.6
        # Window switch: raise a window and move it into the free quarter, twice.
        for _ in range(2):
            if t + 1.2 > seconds:
                break
            name = rng.choice(sorted(where))
            steps.append(Step(t, "note", text=f"switch to {name} {_sentence(rng, 5)}"))
            steps.append(Step(t + 0.3, "move", window=name, quarter=free))
            free, where[name] = where[name], free
            t += 1.2
        t = _idle(steps, t, rng, seconds, f"c{cycle}b")
        cycle += 1
    return steps


def _idle(steps: list[Step], t: float, rng: random.Random, seconds: float, name: str) -> float:
    idle = rng.uniform(4.0, 5.0)
    if t + idle > seconds:
        return t
    steps.append(Step(t + idle / 2, "checkpoint", name=name))
    return t + idle


class Terminal:
    """An xterm and the model of what it shows."""

    def __init__(self, display: str, name: str, command: list[str], quarter: int) -> None:
        self.name = name
        self.lines: list[str] = []
        x, y = QUARTERS[quarter]
        env = {**os.environ, "DISPLAY": display}
        self.proc = subprocess.Popen(
            [
                "xterm",
                *FONT,
                "-geometry",
                f"{COLS}x{ROWS}+{x}+{y}",
                "-title",
                name,
                "-xrm",
                "XTerm*cursorBlink: false",
                "-e",
                *command,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wid = ""

    def visible_words(self) -> list[str]:
        # The cursor sits on an empty row below the last line.
        return [w for line in self.lines[-(ROWS - 1) :] for w in words_of(line)]


class Workload:
    """Runs `plan(seconds, seed)` on `display`; `run()` returns the manifest."""

    def __init__(
        self, display: str, seconds: float = 60.0, seed: int = 0, out: Path | None = None
    ) -> None:
        for tool in ("xterm", "xdotool", "xsetroot"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed")
        self.display = display
        self.seconds = seconds
        self.seed = seed
        self.steps = plan(seconds, seed)
        self.out = out or Path(tempfile.mkdtemp(prefix="taskerino-workload-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "DISPLAY": display}
        self.files = {"log": self.out / "log.txt", "notes": self.out / "notes.txt"}
        self.terminals: dict[str, Terminal] = {}

    def _x(self, *args: str) -> str:
        return subprocess.run(
            ["xdotool", *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def setup(self) -> None:
        subprocess.run(["xsetroot", "-solid", DESKTOP], env=self.env, check=True)
        for path in self.files.values():
            path.write_text("")
        self.terminals = {
            "log": Terminal(
                self.display, "log", ["tail", "-n", "+1", "-f", str(self.files["log"])], 0
            ),
            "editor": Terminal(self.display, "editor", ["cat"], 1),
            "notes": Terminal(
                self.display, "notes", ["tail", "-n", "+1", "-f", str(self.files["notes"])], 2
            ),
        }
        deadline = time.monotonic() + 15
        for term in self.terminals.values():
            while not term.wid:
                found = subprocess.run(
                    ["xdotool", "search", "--pid", str(term.proc.pid)],
                    env=self.env,
                    capture_output=True,
                    text=True,
                )
                ids = found.stdout.split()
                if ids:
                    term.wid = ids[0]
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"xterm {term.name} did not appear")
                else:
                    time.sleep(0.05)
        time.sleep(0.5)  # let them draw
        self._x("windowfocus", "--sync", self.terminals["editor"].wid)

    def teardown(self) -> None:
        for term in self.terminals.values():
            term.proc.terminate()
        for term in self.terminals.values():
            try:
                term.proc.wait(5)
            except subprocess.TimeoutExpired:
                term.proc.kill()
                term.proc.wait()
        self.terminals = {}

    def _append(self, which: str, text: str) -> None:
        with self.files[which].open("a") as f:
            f.write(text + "\n")
        self.terminals[which].lines.append(text)

    def _checkpoint(self, step: Step, start: float, grabber: Any) -> Checkpoint:
        wall = time.time()
        offset = time.monotonic() - start
        shot = np.asarray(grabber.grab(MONITOR))[:, :, :3]
        image = self.out / f"{step.name}.png"
        cv2.imwrite(str(image), shot)
        words = [w for t in self.terminals.values() for w in t.visible_words()]
        return Checkpoint(step.name, step.at, wall, offset, str(image), words)

    def run(self) -> dict[str, Any]:
        """Set up, play the plan, tear down; the manifest (also written to out/)."""
        checkpoints: list[Checkpoint] = []
        late = 0.0
        self.setup()
        try:
            with mss.MSS(display=self.display) as grabber:
                start_wall = time.time()
                start = time.monotonic()
                for step in self.steps:
                    wait = start + step.at - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    else:
                        late = max(late, -wait)
                    if step.kind == "log":
                        self._append("log", step.text)
                    elif step.kind == "note":
                        self._append("notes", step.text)
                    elif step.kind == "type":
                        editor = self.terminals["editor"]
                        self._x("windowfocus", "--sync", editor.wid)
                        self._x("type", "--delay", str(TYPE_DELAY_MS), step.text)
                        self._x("key", "Return")
                        editor.lines += [step.text, step.text]  # tty echo, then cat
                    elif step.kind == "move":
                        wid = self.terminals[step.window].wid
                        x, y = QUARTERS[step.quarter]
                        self._x("windowraise", wid)
                        self._x("windowmove", "--sync", wid, str(x), str(y))
                    elif step.kind == "checkpoint":
                        checkpoints.append(self._checkpoint(step, start, grabber))
                remaining = start + self.seconds - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
                end_wall = time.time()
        finally:
            self.teardown()
        manifest = {
            "display": self.display,
            "seconds": self.seconds,
            "seed": self.seed,
            "steps": len(self.steps),
            "start_wall": start_wall,
            "end_wall": end_wall,
            "max_late_s": late,
            "checkpoints": [asdict(c) for c in checkpoints],
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--display", default=os.environ.get("DISPLAY"), required=False)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.display:
        parser.error("--display (or DISPLAY) is required")
    manifest = Workload(args.display, args.seconds, args.seed, args.out).run()
    print(json.dumps({k: v for k, v in manifest.items() if k != "checkpoints"}))
    for c in manifest["checkpoints"]:
        print(f"{c['name']:>6} at {c['offset']:6.2f} s: {len(c['words'])} words, {c['image']}")


if __name__ == "__main__":
    main()
