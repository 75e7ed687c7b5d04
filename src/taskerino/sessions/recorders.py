"""Which recorders a configuration asks for, and how they depend on each other."""

from __future__ import annotations

from ..models import SessionConfig
from ..recording.base import Recorder
from ..rules import is_test_source


def build_recorders(config: SessionConfig) -> list[Recorder]:
    """The recorders of a checked configuration. Each recorder module is imported only
    when asked for: screenshots need no audio code, audio needs no video code."""
    recorders: list[Recorder] = []
    if config.screenshots:
        from ..recording.screenshots import ScreenshotRecorder

        recorders.append(
            ScreenshotRecorder(
                config.screenshot_interval, config.screenshot_source, exclude=config.exclude
            )
        )
    if config.screenshots or (config.video and not all(is_test_source(s) for s in config.sources)):
        # The screen is recorded: so is which window is in front.
        from ..recording.activity import ActivityRecorder

        recorders.append(ActivityRecorder(exclude=config.exclude))
    audio = None
    if config.audio or config.system_audio:
        from ..recording.audio import AudioRecorder

        audio = AudioRecorder(config.mic, config.audio, config.system_audio, config.balance)
        recorders.append(audio)
    if config.video:
        from ..recording.video import VideoRecorder

        assert config.compositor is not None
        recorders.append(
            VideoRecorder(
                config.sources,
                config.compositor,
                config.fps,
                config.width,
                config.height,
                audio=audio,  # its joined file is muxed into the video: a stated dependency
                exclude=config.exclude,
            )
        )
    return recorders
