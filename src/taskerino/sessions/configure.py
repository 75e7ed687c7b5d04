"""A session configuration checked as a whole, devices included, before anything starts.

The limits come from the rule book (`taskerino.rules`); this adds what needs the screen
or the sound server: does display:3 exist, is that window open, is there a microphone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import SessionConfig
from ..rules import check_config, is_test_source

if TYPE_CHECKING:
    from ..capture import CaptureBackend


def configure(config: SessionConfig, backend: CaptureBackend | None = None) -> SessionConfig:
    """Check a whole session configuration; return it with canonical values filled in."""
    # Capture (numpy, X11) is imported only when a session is really configured.
    from ..capture import get_backend, validate_sources

    config = check_config(config)
    needs_screen = config.screenshots or (
        config.video and not all(is_test_source(s) for s in config.sources)
    )
    screen = backend or (get_backend() if needs_screen else None)
    try:
        if config.video:
            config.sources = validate_sources(config.sources, screen)
        if config.screenshots and config.screenshot_source is not None:
            config.screenshot_source = validate_sources([config.screenshot_source], screen)[0]
    finally:
        if backend is None and screen is not None:
            screen.close()
    if config.audio or config.system_audio:
        from ..capture.audio import validate_audio

        validate_audio(config.mic, config.system_audio, config.balance, config.audio)
    return config
