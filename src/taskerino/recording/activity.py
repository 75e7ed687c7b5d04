"""The activity track: which window is in front, sampled once a second, kept on change.

Cheap by design: one or two X round trips a second, nothing stored while the same window
stays in front, nothing sampled while paused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ..capture import CaptureBackend, get_backend
from ..errors import TaskerinoError
from ..models import ActivityEvent, new_id, on_timeline, utc_now
from .base import Finisher, Recorder, RecordingContext

log = logging.getLogger("taskerino.activity")

SAMPLE_SECONDS = 1.0


class ActivityRecorder(Recorder):
    kind = "activity"

    def __init__(
        self,
        backend: CaptureBackend | None = None,
        sample_seconds: float = SAMPLE_SECONDS,
        exclude: Sequence[str] = (),
    ) -> None:
        self.exclude = list(exclude)
        self._backend = backend
        self._own_backend = backend is None
        self.sample_seconds = sample_seconds
        self._ctx: RecordingContext | None = None
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[str, str] | None = None
        self.events = 0

    def prepare(self, ctx: RecordingContext) -> None:
        self._ctx = ctx
        if self._backend is None:
            self._backend = get_backend()
        # An excluded window in front is recorded as such, never by its names.
        self._backend.exclude(self.exclude)

    def begin(self) -> None:
        self._thread = threading.Thread(target=self._run, name="activity", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> Finisher | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._own_backend and self._backend is not None:
            self._backend.close()
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._paused.is_set():
                try:
                    self._sample()
                except TaskerinoError as exc:
                    # The track is a help, not the recording: a lost probe is reported once.
                    assert self._ctx is not None
                    self._ctx.report(f"activity track stopped: {exc}")
                    return
            self._stop.wait(self.sample_seconds)

    def _sample(self) -> None:
        ctx, backend = self._ctx, self._backend
        assert ctx is not None and backend is not None
        focused = backend.focused_window()
        if focused is None or focused == self._last:
            return
        self._last = focused
        app, title = focused
        ctx.store.add_activity(
            ActivityEvent(
                id=new_id(),
                session_id=ctx.session_id,
                timestamp=utc_now(),
                media_offset=on_timeline(ctx.clock.offset()),
                app=app,
                title=title,
            )
        )
        self.events += 1
