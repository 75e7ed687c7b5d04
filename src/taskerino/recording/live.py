"""The live recordings of this process: one `LiveRecording` per session, in one registry."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ..errors import NotFound, StorageError
from ..models import RecordingState, RecordingStats, drop_rate, health_for, utc_now
from ..store.uploads import Uploads
from .base import Finisher, MediaClock, Recorder


class LiveRecording:
    """The recorders of one session and their shared clock, from start to stop."""

    def __init__(
        self,
        session_id: str,
        recorders: list[Recorder],
        clock: MediaClock,
        uploads: Uploads | None = None,
    ) -> None:
        self.session_id = session_id
        self.recorders = recorders
        self.clock = clock
        self.uploads = uploads
        self.end_lock = threading.Lock()  # one ending at a time; the second waits and sees it
        self.stopped = False
        self.ended = threading.Event()  # set once the session is completed in the store

    def pause(self) -> None:
        self.clock.pause()
        for recorder in self.recorders:
            recorder.pause()

    def resume(self) -> None:
        self.clock.resume()
        for recorder in self.recorders:
            recorder.resume()

    def stop(self) -> list[Finisher]:
        """Stop every recorder (all of them, even when one fails), each after the ones it
        depends on, wait for their media to be uploaded, and collect their finishers.

        StorageError when uploads still fail after `DRAIN_SECONDS` of retries: their
        files are then still in staging, for recovery."""
        finishers: list[Finisher] = []
        errors: list[BaseException] = []
        for recorder in stop_order(self.recorders):
            try:
                finisher = recorder.stop()
            except Exception as exc:
                errors.append(exc)
                continue
            if finisher is not None:
                finishers.append(finisher)
        self.stopped = True
        if errors:
            raise errors[0]
        if self.uploads is not None:
            drained = self.uploads.drain()
            self.uploads.close()
            if not drained:
                raise StorageError(
                    f"{self.uploads.pending} media file(s) could not be uploaded "
                    f"({self.uploads.last_error}); they are kept in the staging folder"
                )
        return finishers

    def failures(self) -> list[str]:
        return [r.failure for r in self.recorders if r.failure]

    def stats(self) -> RecordingStats:
        figures: dict[str, float] = {}
        written = 0  # every recorder writes files: their bytes add up
        for recorder in self.recorders:
            figures_of = recorder.stats()
            written += int(figures_of.pop("bytes_written", 0))
            figures.update(figures_of)
        uploads = self.uploads.stats() if self.uploads is not None else {}
        processed = int(figures.pop("frames_processed", 0))
        dropped = int(figures.pop("frames_dropped", 0))
        rate = drop_rate(processed, dropped)
        seconds = self.clock.offset()
        elapsed = max(1e-6, seconds)
        state: RecordingState = (
            "stopped" if self.stopped else ("paused" if self.clock.paused else "recording")
        )
        return RecordingStats(
            session_id=self.session_id,
            state=state,
            frames_captured=int(figures.pop("frames_captured", 0)),
            frames_changed=int(figures.pop("frames_changed", 0)),
            seconds=seconds,
            frames_processed=processed,
            frames_dropped=dropped,
            drop_rate=rate,
            fps=figures.pop("fps", 0.0),
            target_fps=figures.pop("target_fps", 0.0),
            bytes_written=written,
            bitrate_kbps=written * 8 / 1000 / elapsed,
            encode_lag_ms=figures.pop("encode_lag_ms", 0.0),
            health=health_for(rate),
            uploads_pending=int(uploads.get("uploads_pending", 0)),
            uploads_failed=int(uploads.get("uploads_failed", 0)),
            updated_at=utc_now(),
            audio={k: v for k, v in figures.items()},
        )


def stop_order(recorders: list[Recorder]) -> list[Recorder]:
    """`recorders` with every recorder after those it depends on."""
    ordered: list[Recorder] = []

    def visit(recorder: Recorder) -> None:
        if recorder not in ordered:
            for dependency in recorder.depends_on:
                visit(dependency)
            ordered.append(recorder)

    for recorder in recorders:
        visit(recorder)
    return ordered


class RecordingRegistry:
    """Every live recording of this process, by session id, for as long as it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, LiveRecording] = {}

    def add(self, recording: LiveRecording) -> None:
        with self._lock:
            self._live[recording.session_id] = recording

    def remove(self, session_id: str) -> None:
        with self._lock:
            self._live.pop(session_id, None)

    def find(self, session_id: str) -> LiveRecording | None:
        with self._lock:
            return self._live.get(session_id)

    def get(self, session_id: str) -> LiveRecording:
        found = self.find(session_id)
        if found is None:
            raise NotFound(f"no such recording: {session_id!r} is not recording in this process")
        return found

    def __iter__(self) -> Iterator[LiveRecording]:
        with self._lock:
            return iter(list(self._live.values()))
