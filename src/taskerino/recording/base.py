"""What every recorder (screenshots, video, audio) implements, and the clock they share."""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..models import Session, on_timeline
from ..store.base import Store
from ..store.media import MediaLibrary
from ..store.uploads import Uploads

# Runs inside the transaction that ends the session, to attach a recorder's final result.
Finisher = Callable[[Session], None]
# In a staging folder: stored media fetched back from a remote blob store for salvage.
FETCHED = "fetched"


class MediaClock:
    """Seconds since the session started, paused time excluded: the media timeline.

    Every recorder of a session reads the same clock, so their offsets agree.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic, offset: float = 0.0) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._started = now() - offset
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._ended_at: float | None = None
        self.last_change = self._started  # monotonic time of the last pause or resume

    def offset(self, at: float | None = None) -> float:
        """The media offset of monotonic time `at` (default: now); still while paused and
        after the end, so nothing can be placed past the end of the timeline."""
        with self._lock:
            t = self._now() if at is None else at
            if self._paused_at is not None:
                t = min(t, self._paused_at)
            if self._ended_at is not None:
                t = min(t, self._ended_at)
            return max(0.0, t - self._started - self._paused_total)

    def end(self) -> float:
        """Stop the timeline for good; returns its final offset, on the timeline's rounding."""
        with self._lock:
            if self._ended_at is None:
                self._ended_at = self._paused_at if self._paused_at is not None else self._now()
        return on_timeline(self.offset())

    def monotonic_of(self, offset: float) -> float:
        """The monotonic time at which the media timeline reached `offset` (last stretch)."""
        with self._lock:
            return self._started + self._paused_total + offset

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        with self._lock:
            if self._paused_at is None:
                self._paused_at = self.last_change = self._now()

    def resume(self) -> None:
        with self._lock:
            if self._paused_at is not None:
                self.last_change = self._now()
                self._paused_total += self.last_change - self._paused_at
                self._paused_at = None


@dataclass
class RecordingContext:
    """What a recorder needs from its session."""

    session_id: str
    store: Store
    media: MediaLibrary
    clock: MediaClock
    staging: Path  # this recorder's own folder for files not yet in the blob store
    report: Callable[[str], None]  # a human-readable event (warning) about the recording
    uploads: Uploads  # the session's media on its way into the blob store


class Recorder(abc.ABC):
    """One kind of capture within a session.

    `prepare` opens devices and may fail (nothing is written then); `begin` starts the
    threads. `pause`/`resume` keep the same recording. `stop` stops capturing, waits for
    the final data and returns a `Finisher` for the ending transaction. `stop` is
    idempotent.
    """

    kind: str
    # Recorders whose final result this one uses at stop: they are stopped first.
    depends_on: tuple[Recorder, ...] = ()

    @abc.abstractmethod
    def prepare(self, ctx: RecordingContext) -> None: ...

    @abc.abstractmethod
    def begin(self) -> None: ...

    @abc.abstractmethod
    def pause(self) -> None: ...

    @abc.abstractmethod
    def resume(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> Finisher | None: ...

    def stats(self) -> dict[str, float]:
        """Live figures for RecordingStats (video fills the frame counters)."""
        return {}

    @property
    def failure(self) -> str | None:
        """Why the recorder stopped on its own (disk full, device gone), else None."""
        return None
