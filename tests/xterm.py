"""Real xterm windows with known text on the test display (for OCR and focus tests)."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from Xlib import X
from Xlib import display as xdisplay

FONT = ["-fa", "DejaVu Sans Mono", "-fs", "26"]


@dataclass(frozen=True)
class Terminal:
    wid: int
    title: str
    x: int
    y: int
    width: int
    height: int
    cols: int
    rows: int

    @property
    def cell(self) -> tuple[float, float]:
        """(width, height) of one character cell in pixels (xterm runs with `-b 0`)."""
        return self.width / self.cols, self.height / self.rows


def _find(title: str, timeout: float = 15.0) -> int:
    d = xdisplay.Display()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in d.screen().root.query_tree().children:
                if child.get_wm_name() == title:
                    attrs = child.get_attributes()
                    if attrs.map_state == X.IsViewable:
                        return int(child.id)
            time.sleep(0.05)
    finally:
        d.close()
    raise TimeoutError(f"xterm {title!r} did not appear")


def _geometry(wid: int) -> tuple[int, int, int, int]:
    d = xdisplay.Display()
    try:
        window = d.create_resource_object("window", wid)
        geom = window.get_geometry()
        pos = d.screen().root.translate_coords(window, 0, 0)
        return pos.x, pos.y, geom.width, geom.height
    finally:
        d.close()


@contextmanager
def xterm(
    title: str,
    lines: list[str],
    *,
    x: int = 0,
    y: int = 0,
    cols: int = 40,
    rows: int | None = None,
    dark: bool = False,
    colours: tuple[str, str] | None = None,
) -> Iterator[Terminal]:
    """An xterm at (x, y) on $DISPLAY showing `lines` (cursor hidden), closed on exit;
    `colours` (foreground, background) overrides black on white (or white on black)."""
    rows = rows or len(lines) + 1
    text = "\\n".join(lines)
    script = f"printf '\\033[?25l{text}'; exec sleep 600"
    fg, bg = colours or (("white", "black") if dark else ("black", "white"))
    proc = subprocess.Popen(
        [
            "xterm",
            *FONT,
            "-b",
            "0",
            "-fg",
            fg,
            "-bg",
            bg,
            "-T",
            title,
            "-geometry",
            f"{cols}x{rows}+{x}+{y}",
            "-e",
            f"sh -c {shlex.quote(script)}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wid = _find(title)
        gx, gy, width, height = _geometry(wid)
        yield Terminal(wid, title, gx, gy, width, height, cols, rows)
    finally:
        proc.terminate()
        proc.wait(10)
