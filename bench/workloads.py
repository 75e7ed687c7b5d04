"""Scripted, deterministic screen workloads of different kinds (for bench/bench_workloads.py).

Each is a `Workload` (bench/workload.py): xterms (DejaVu Sans Mono 10, black on white) on
a fresh Xvfb driven by xdotool, a plan that depends only on `seconds` and `seed`, every
step at a fixed offset from the start, and checkpoints (a raw screenshot of display:1 and
the words the workload knows are on screen) in moments where the screen holds still.

- `pages`:  one full-screen terminal that shows a whole new page of text every second,
            continuously (`tail -f` of a file that gets a page of lines a second);
            checkpoints half a second after a page.
- `typing`: editor-like typing: a full-screen terminal with a page of text in it, typed
            into line after line (`xdotool type`, ~12 characters a second, real keystrokes);
            checkpoints in short pauses between lines.
- `scroll`: a long article (prose paragraphs) in `less -S` in a full-screen terminal,
            scrolled line by line with the Down key at 8-15 lines a second (a line every
            one or two frames), the way a reader scrolls a browser page; checkpoints in
            the reading pauses.
- `video`:  a video playing in a 960x540 window (`ffplay` of a generated 30 fps Mandelbrot
            zoom: fine detail in motion everywhere, like camera footage) beside a terminal
            whose log gets a line every second or so; checkpoints read the terminal.
- `idle`:   three terminals full of text, nothing moving; checkpoints on the still screen.
- `bursty`: bench/workload.py's own workload (scroll bursts, typing, window switches,
            4-5 s idle stretches).

Run one on its own:  .venv/bin/python bench/workloads.py pages --display :99 [--seconds 25]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mss

from workload import (
    QUARTERS,
    TYPE_DELAY_MS,
    WORDS,
    Checkpoint,
    Step,
    Terminal,
    Workload,
    words_of,
)

FULL_COLS, FULL_ROWS = 238, 62  # a 1920x1080 terminal at DejaVu Sans Mono 10 (8x17 cells)
HALF_COLS, HALF_ROWS = 118, 62  # 960x1080
LEVELS = ("INFO", "WARN", "DEBUG", "ERROR")


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _log_line(rng: random.Random, n: int, width: int) -> str:
    stamp = f"12:{(n // 60) % 60:02d}:{n % 60:02d}"
    text = (
        f"{stamp} {rng.choice(LEVELS):<5} {rng.choice(WORDS)}-{rng.randint(1, 9)} "
        f"{_sentence(rng, rng.randint(4, 22))} id={rng.randint(1000, 99999)}"
    )
    return text[: width - 2]


class Term(Terminal):
    """A terminal of any size at any position."""

    def __init__(
        self,
        display: str,
        name: str,
        command: list[str],
        cols: int,
        rows: int,
        x: int = 0,
        y: int = 0,
    ) -> None:
        self.rows = rows
        env = {**os.environ, "DISPLAY": display}
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                "xterm",
                "-fa",
                "DejaVu Sans Mono",
                "-fs",
                "10",
                "-geometry",
                f"{cols}x{rows}+{x}+{y}",
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
        return [w for line in self.lines[-(self.rows - 1) :] for w in words_of(line)]


class Scripted(Workload):
    """A workload whose plan, terminals and steps are its own; checkpoints as the base's."""

    kind = "scripted"

    def __init__(
        self, display: str, seconds: float = 25.0, seed: int = 0, out: Path | None = None
    ) -> None:
        super().__init__(display, seconds, seed, out)
        self.steps = self.make_plan(random.Random(seed))

    def make_plan(self, rng: random.Random) -> list[Step]:
        raise NotImplementedError

    def make_terminals(self) -> dict[str, Terminal]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Before the terminals open (files they show)."""

    def truth(self) -> list[str]:
        return [w for t in self.terminals.values() for w in t.visible_words()]

    def do(self, step: Step) -> None:
        raise NotImplementedError

    def setup(self) -> None:
        subprocess.run(["xsetroot", "-solid", "#2e3440"], env=self.env, check=True)
        for path in self.files.values():
            path.write_text("")
        self.prepare()
        self.terminals = self.make_terminals()
        deadline = time.monotonic() + 15
        for term in self.terminals.values():
            while not term.wid:
                found = subprocess.run(
                    ["xdotool", "search", "--pid", str(term.proc.pid)],
                    env=self.env,
                    capture_output=True,
                    text=True,
                )
                if found.stdout.split():
                    term.wid = found.stdout.split()[0]
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"xterm {term.name} did not appear")
                else:
                    time.sleep(0.05)
        time.sleep(0.8)  # let them draw
        first = next(iter(self.terminals.values()))
        self._x("windowfocus", "--sync", first.wid)

    def _checkpoint(self, step: Step, start: float, grabber: Any) -> Checkpoint:
        checkpoint = super()._checkpoint(step, start, grabber)
        checkpoint.words = self.truth()
        return checkpoint

    def run(self) -> dict[str, Any]:
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
                    if step.kind == "checkpoint":
                        checkpoints.append(self._checkpoint(step, start, grabber))
                    else:
                        self.do(step)
                remaining = start + self.seconds - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
                end_wall = time.time()
        finally:
            self.teardown()
        manifest = {
            "kind": self.kind,
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


class Pages(Scripted):
    """A whole new page of text every second, continuously."""

    kind = "pages"

    def make_plan(self, rng: random.Random) -> list[Step]:
        steps: list[Step] = []
        n = 0
        t = 0.5
        page = 0
        while t + 1.0 <= self.seconds:
            lines = [_log_line(rng, n + i, FULL_COLS) for i in range(FULL_ROWS - 1)]
            n += len(lines)
            steps.append(Step(t, "page", text="\n".join(lines)))
            if page % 6 == 3:
                steps.append(Step(t + 0.6, "checkpoint", name=f"p{page}"))
            page += 1
            t += 1.0
        return steps

    def make_terminals(self) -> dict[str, Terminal]:
        tail = ["tail", "-n", "+1", "-f", str(self.files["log"])]
        return {"log": Term(self.display, "log", tail, FULL_COLS, FULL_ROWS)}

    def do(self, step: Step) -> None:
        with self.files["log"].open("a") as f:
            f.write(step.text + "\n")
        self.terminals["log"].lines += step.text.split("\n")


class Typing(Scripted):
    """Editor-like typing into a full-screen terminal that already shows a page of text."""

    kind = "typing"

    def prepare(self) -> None:
        rng = random.Random(self.seed + 1000)
        self.prefill = [
            f"{i + 1:4d}  " + "    " * rng.randint(0, 3) + _sentence(rng, rng.randint(2, 12))
            for i in range(FULL_ROWS - 8)
        ]
        self.files["notes"].write_text("\n".join(self.prefill) + "\n")

    def make_plan(self, rng: random.Random) -> list[Step]:
        steps: list[Step] = []
        t = 0.5
        line = 0
        while True:
            text = _sentence(rng, rng.randint(3, 6))
            typing = len(text) * TYPE_DELAY_MS / 1000
            if t + typing + 1.5 > self.seconds:
                break
            steps.append(Step(t, "type", text=text))
            t += typing + 0.4
            if line % 3 == 1:
                steps.append(Step(t + 0.5, "checkpoint", name=f"t{line}"))
                t += 1.0
            line += 1
        return steps

    def make_terminals(self) -> dict[str, Terminal]:
        command = ["sh", "-c", f"cat {self.files['notes']}; exec cat"]
        term = Term(self.display, "editor", command, FULL_COLS, FULL_ROWS)
        term.lines = list(self.prefill)
        return {"editor": term}

    def do(self, step: Step) -> None:
        editor = self.terminals["editor"]
        self._x("type", "--delay", str(TYPE_DELAY_MS), step.text)
        self._x("key", "Return")
        editor.lines += [step.text, step.text]  # tty echo, then cat


class Scroll(Scripted):
    """A long article in `less`, scrolled line by line like a reader scrolls a page."""

    kind = "scroll"

    def prepare(self) -> None:
        rng = random.Random(self.seed + 2000)
        lines: list[str] = []
        while len(lines) < 1200:
            words = [rng.choice(WORDS) for _ in range(rng.randint(40, 140))]
            words[0] = words[0].capitalize()
            current = ""
            for w in words:
                if len(current) + len(w) + 1 > 110:
                    lines.append(current)
                    current = ""
                current = f"{current} {w}" if current else w
            lines += [current + ".", ""]
        self.article = lines
        self.files["notes"].write_text("\n".join(lines) + "\n")
        self.top = 0

    def make_plan(self, rng: random.Random) -> list[Step]:
        steps: list[Step] = []
        t = 0.5
        n = 0
        while t + 5.0 <= self.seconds:
            rate = rng.choice((8.0, 10.0, 15.0))
            count = int(rng.uniform(2.5, 4.0) * rate)
            for i in range(count):
                steps.append(Step(t + i / rate, "down"))
            t += count / rate + 0.3
            steps.append(Step(t + 0.6, "checkpoint", name=f"s{n}"))
            t += 1.2
            n += 1
        return steps

    def make_terminals(self) -> dict[str, Terminal]:
        command = ["less", "-S", "-P", "article", str(self.files["notes"])]
        return {"article": Term(self.display, "article", command, FULL_COLS, FULL_ROWS)}

    def truth(self) -> list[str]:
        shown = self.article[self.top : self.top + FULL_ROWS - 1]
        return [w for line in shown for w in words_of(line)]

    def do(self, step: Step) -> None:
        self._x("key", "Down")
        self.top += 1


def make_video(path: Path, seconds: float) -> Path:
    """A 960x540 30 fps Mandelbrot zoom (fine moving detail), made once per folder."""
    if not path.exists():
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "mandelbrot=size=960x540:rate=30",
                "-t",
                str(seconds),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "18",
                "-pix_fmt",
                "yuv420p",
                str(path),
            ],
            check=True,
        )
    return path


class Video(Scripted):
    """A video playing in a window beside a terminal whose log grows now and then."""

    kind = "video"
    video_file: Path | None = None

    def make_plan(self, rng: random.Random) -> list[Step]:
        steps: list[Step] = []
        t = 0.3
        n = 0
        while t + 1.0 <= self.seconds:
            steps.append(Step(t, "log", text=_log_line(rng, n, HALF_COLS)))
            if n % 5 == 3:
                steps.append(Step(t + 0.5, "checkpoint", name=f"v{n}"))
            t += rng.uniform(0.8, 1.4)
            n += 1
        return steps

    def prepare(self) -> None:
        rng = random.Random(self.seed + 3000)
        self.files["log"].write_text(
            "\n".join(_log_line(rng, 1000 + i, HALF_COLS) for i in range(HALF_ROWS)) + "\n"
        )

    def make_terminals(self) -> dict[str, Terminal]:
        tail = ["tail", "-n", "+1", "-f", str(self.files["log"])]
        term = Term(self.display, "log", tail, HALF_COLS, HALF_ROWS, x=960, y=0)
        term.lines = self.files["log"].read_text().splitlines()
        return {"log": term}

    def setup(self) -> None:
        if shutil.which("ffplay") is None:
            raise RuntimeError("ffplay is not installed (Debian package ffmpeg)")
        super().setup()
        video = self.video_file or make_video(self.out / "video.mp4", self.seconds + 10)
        self.player = subprocess.Popen(
            [
                "ffplay",
                "-v",
                "quiet",
                "-an",
                "-noborder",
                "-left",
                "0",
                "-top",
                "270",
                "-x",
                "960",
                "-y",
                "540",
                "-loop",
                "0",
                str(video),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # the player window is up and playing

    def teardown(self) -> None:
        player = getattr(self, "player", None)
        if player is not None:
            player.terminate()
            try:
                player.wait(5)
            except subprocess.TimeoutExpired:
                player.kill()
                player.wait()
        super().teardown()

    def do(self, step: Step) -> None:
        with self.files["log"].open("a") as f:
            f.write(step.text + "\n")
        self.terminals["log"].lines.append(step.text)


class Idle(Scripted):
    """Three terminals full of text; nothing moves."""

    kind = "idle"

    def make_plan(self, rng: random.Random) -> list[Step]:
        return [
            Step(at, "checkpoint", name=f"i{n}")
            for n, at in enumerate((3.0, self.seconds / 2, self.seconds - 2.0))
        ]

    def prepare(self) -> None:
        rng = random.Random(self.seed + 4000)
        for which in ("log", "notes"):
            lines = [_log_line(rng, i, 118) for i in range(30)]
            self.files[which].write_text("\n".join(lines) + "\n")

    def make_terminals(self) -> dict[str, Terminal]:
        terms: dict[str, Terminal] = {}
        for quarter, which in enumerate(("log", "notes")):
            tail = ["tail", "-n", "+1", "-f", str(self.files[which])]
            x, y = QUARTERS[quarter]
            term = Term(self.display, which, tail, 118, 31, x, y)
            term.lines = self.files[which].read_text().splitlines()
            terms[which] = term
        x, y = QUARTERS[2]
        terms["editor"] = Term(self.display, "editor", ["cat"], 118, 31, x, y)
        return terms

    def do(self, step: Step) -> None:
        pass


class Bursty(Workload):
    kind = "bursty"


KINDS: dict[str, type[Workload]] = {
    "pages": Pages,
    "typing": Typing,
    "scroll": Scroll,
    "video": Video,
    "idle": Idle,
    "bursty": Bursty,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--display", default=os.environ.get("DISPLAY"))
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.display:
        parser.error("--display (or DISPLAY) is required")
    manifest = KINDS[args.kind](args.display, args.seconds, args.seed, args.out).run()
    print(json.dumps({k: v for k, v in manifest.items() if k != "checkpoints"}))
    for c in manifest["checkpoints"]:
        print(f"{c['name']:>6} at {c['offset']:6.2f} s: {len(c['words'])} words, {c['image']}")


if __name__ == "__main__":
    main()
