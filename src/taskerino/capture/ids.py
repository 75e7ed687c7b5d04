"""Source ids (`display:N`, `window:ID`, `test:NAME`): parsing and validation.

The same checks back the CLI, the API and the library, so every message says what is wrong
and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidInput
from .base import CaptureBackend

SourceKind = Literal["display", "window", "test"]

EXPECTED = "expected display:N (N from 'taskerino sources'), window:ID or test:NAME"
_DISPLAY = re.compile(r"[0-9]{1,6}")
_WINDOW = re.compile(r"0[xX][0-9a-fA-F]{1,8}|[0-9]{1,10}")
_TEST = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class SourceId:
    """A parsed source id; `str()` gives the canonical form."""

    kind: SourceKind
    value: int | str  # display number, X11 window id, or test name

    def __str__(self) -> str:
        if self.kind == "window":
            assert isinstance(self.value, int)
            return f"window:{self.value:#x}"
        return f"{self.kind}:{self.value}"


def _invalid(text: str, why: str) -> InvalidInput:
    return InvalidInput(f"invalid source {text!r}: {why}", source=text)


def parse_source_id(text: str) -> SourceId:
    """Parse one source id; raises InvalidInput for anything malformed."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("display", "window", "test"):
        raise _invalid(text, EXPECTED)
    if kind == "display":
        if not _DISPLAY.fullmatch(rest) or int(rest) < 1:
            raise _invalid(
                text,
                "display:N needs a whole number N from 1 (see 'taskerino sources'), e.g. display:1",
            )
        return SourceId("display", int(rest))
    if kind == "window":
        if not _WINDOW.fullmatch(rest):
            raise _invalid(
                text,
                "window:ID needs an X11 window id in hex (window:0x1a00003) "
                "or decimal (see 'taskerino sources')",
            )
        value = int(rest, 16) if rest[:2] in ("0x", "0X") else int(rest)
        if not 0 < value < 2**32:
            raise _invalid(text, "window id out of range (see 'taskerino sources')")
        return SourceId("window", value)
    if not _TEST.fullmatch(rest):
        raise _invalid(
            text,
            "test:NAME needs a name of 1-40 letters, digits, '-' or '_', "
            "e.g. test:red or test:still-blue",
        )
    return SourceId("test", rest)


def validate_sources(ids: Sequence[str], backend: CaptureBackend | None) -> list[str]:
    """Parse `ids`, check that each exists on `backend` and none repeats; canonical ids out.

    `test:` sources need no screen, so `backend` may be None when all sources are synthetic.
    How many sources a recording may have is the rule book's business, not checked here.
    """
    parsed = [parse_source_id(text) for text in ids]
    seen: set[str] = set()
    displays: dict[str, str] | None = None  # id -> "LEFT 1920x1080", listed once
    windows: set[str] | None = None
    for text, sid in zip(ids, parsed, strict=True):
        canonical = str(sid)
        if canonical in seen:
            raise InvalidInput(
                f"source {text!r} is given twice; each source may appear once", source=text
            )
        seen.add(canonical)
        if sid.kind != "test" and backend is None:
            raise InvalidInput(f"source {text!r} needs a screen to capture", source=text)
        if sid.kind == "display":
            assert backend is not None
            if displays is None:
                displays = {d.id: f"{d.name} {d.width}x{d.height}" for d in backend.displays()}
            if canonical not in displays:
                available = ", ".join(f"{i} ({label})" for i, label in displays.items())
                raise InvalidInput(
                    f"unknown source {text!r}: available displays are {available or 'none'}",
                    source=text,
                )
        elif sid.kind == "window":
            assert backend is not None
            if windows is None:
                windows = {w.id for w in backend.windows()}
            if canonical not in windows:
                raise InvalidInput(
                    f"unknown source {text!r}: no such window is open; "
                    "'taskerino sources' lists the windows",
                    source=text,
                )
    return [str(sid) for sid in parsed]
