"""One validation for the CLI, the web API and the library: all of it before anything starts."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..models import SessionConfig

if TYPE_CHECKING:
    from ..capture import CaptureBackend

MAX_SOURCES = 4
COMPOSITORS = ("passthrough", "grid", "side-by-side")
MAX_SIZE = (7680, 4320)


def parse_number(text: object, what: str, *, minimum: float = 0.0) -> float:
    """A finite number >= minimum, from a flag value or a JSON field."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise InvalidInput(f"{what} must be a number >= {minimum:g}, got {text!r}")
    return value


def parse_fps(text: object) -> int:
    value = parse_number(text, "fps")
    if value != int(value) or not 1 <= value <= 60:
        raise InvalidInput(f"fps must be a whole number from 1 to 60, got {text!r}")
    return int(value)


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*", text)
    if not match:
        raise InvalidInput(f"size must look like WIDTHxHEIGHT (e.g. 1920x1080), got {text!r}")
    width, height = int(match[1]), int(match[2])
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise InvalidInput(f"size must be positive even numbers (e.g. 1920x1080), got {text!r}")
    if width > MAX_SIZE[0] or height > MAX_SIZE[1]:
        raise InvalidInput(f"size must be at most {MAX_SIZE[0]}x{MAX_SIZE[1]}, got {text!r}")
    return width, height


def validate_config(config: SessionConfig, backend: CaptureBackend | None = None) -> SessionConfig:
    """Check a whole session configuration; return it with canonical values filled in."""
    # Capture (numpy, X11) is imported only when a session is really configured.
    from ..capture import get_backend, parse_source_id, validate_sources

    if not (config.screenshots or config.video or config.audio or config.system_audio):
        raise InvalidInput(
            "nothing to record: enable screenshots, --video, --audio or --system-audio"
        )
    interval = parse_number(config.screenshot_interval, "screenshot interval")
    if interval < 1:
        raise InvalidInput(
            f"screenshot interval must be at least 1 second, got {config.screenshot_interval!r}"
        )
    config.screenshot_interval = interval
    if config.video:
        config.fps = parse_fps(config.fps)
        config.width, config.height = parse_size(f"{config.width}x{config.height}")
        sources = config.sources or ["display:1"]
        if len(sources) > MAX_SOURCES:
            raise InvalidInput(
                f"at most {MAX_SOURCES} video sources can be composited, got {len(sources)}"
            )
        for source in sources:
            parse_source_id(source)  # syntax errors before touching the display
        compositor = config.compositor or ("passthrough" if len(sources) == 1 else "grid")
        if compositor not in COMPOSITORS:
            raise InvalidInput(
                f"unknown compositor {compositor!r}: use one of {', '.join(COMPOSITORS)}"
            )
        if compositor == "passthrough" and len(sources) != 1:
            raise InvalidInput(
                f"the passthrough compositor takes exactly one source, got {len(sources)}: "
                "use grid or side-by-side for several"
            )
        config.compositor = compositor
    needs_screen = config.screenshots or (
        config.video and any(not s.startswith("test:") for s in (config.sources or ["display:1"]))
    )
    if needs_screen:
        own = backend is None
        screen = backend or get_backend()
        try:
            if config.video:
                config.sources = validate_sources(config.sources or ["display:1"], screen)
            if config.screenshots and config.screenshot_source is not None:
                config.screenshot_source = validate_sources([config.screenshot_source], screen)[0]
        finally:
            if own:
                screen.close()
    elif config.video:
        config.sources = [str(parse_source_id(s)) for s in config.sources]
    if config.audio or config.system_audio:
        if not 0 <= config.balance <= 100:
            raise InvalidInput(f"balance must be from 0 to 100, got {config.balance!r}")
        from ..capture.audio import validate_audio

        validate_audio(config.mic, config.system_audio, config.balance, config.audio)
    return config
