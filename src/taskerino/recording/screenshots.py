"""The screenshot recorder: one picture every `interval` seconds, and on demand."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..capture import CaptureBackend, get_backend
from ..errors import CaptureError, StorageError
from ..frame import Frame
from ..models import Attachment, Session, SessionScreenshot, new_id, on_timeline, utc_iso
from ..store.media import MediaLibrary
from ..store.uploads import Uploads
from .base import Finisher, Recorder, RecordingContext

MAX_SIZE = (1920, 1080)
WEBP_QUALITY = 80


def encode_image(frame: Frame, path: Path, max_size: tuple[int, int] = MAX_SIZE) -> tuple[int, int]:
    """Write a BGRA frame as WebP, scaled down to fit `max_size`; return (width, height)."""
    height, width = frame.shape[:2]
    scale = min(1.0, max_size[0] / width, max_size[1] / height)
    bgr = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if scale < 1.0:
        size = (max(2, round(width * scale)), max(2, round(height * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY])
    if not ok:
        raise CaptureError("could not encode the screenshot as WebP")
    path.write_bytes(np.asarray(data).tobytes())
    return bgr.shape[1], bgr.shape[0]


class ScreenshotRecorder(Recorder):
    kind = "screenshots"

    def __init__(
        self,
        interval: float,
        source: str | None = None,
        backend: CaptureBackend | None = None,
        exclude: Sequence[str] = (),
    ) -> None:
        self.interval = interval
        self.source = source
        self.exclude = list(exclude)
        self._backend = backend
        self._own_backend = backend is None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._demand = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx: RecordingContext | None = None
        self._failure: str | None = None
        self.taken = 0
        self.bytes_written = 0  # of the pictures taken

    def prepare(self, ctx: RecordingContext) -> None:
        self._ctx = ctx
        if self._backend is None:
            self._backend = get_backend()
        # Excluded windows are black in every picture the back end gives from now on.
        self._backend.exclude(self.exclude)
        # Fail now, before the session starts, if the screen cannot be captured.
        self._backend.screenshot(self.source)

    def begin(self) -> None:
        self._thread = threading.Thread(target=self._run, name="screenshots", daemon=True)
        self._thread.start()

    def capture_now(self) -> None:
        """Take a screenshot at once (ignored while paused)."""
        self._demand.set()
        self._wake.set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()

    def stop(self) -> Finisher | None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._own_backend and self._backend is not None:
            self._backend.close()
        return None

    @property
    def failure(self) -> str | None:
        return self._failure

    def _run(self) -> None:
        assert self._ctx is not None
        next_due = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if not self._paused.is_set() and (now >= next_due or self._demand.is_set()):
                self._demand.clear()
                try:
                    self._take(self._ctx)
                except (OSError, StorageError) as exc:
                    # Storage is gone (disk full, folder removed): the session must end.
                    self._failure = f"cannot store screenshots: {exc}"
                    return
                except Exception as exc:  # one failed picture must not end the recording
                    self._ctx.report(f"screenshot failed: {exc}")
                next_due = time.monotonic() + self.interval
            timeout = None if self._paused.is_set() else max(0.0, next_due - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            if self._paused.is_set():
                # The interval restarts after a pause: no burst of overdue pictures.
                next_due = max(next_due, time.monotonic())

    def stats(self) -> dict[str, float]:
        return {"bytes_written": float(self.bytes_written)}

    def _take(self, ctx: RecordingContext) -> None:
        assert self._backend is not None
        offset = on_timeline(ctx.clock.offset())
        taken_at = time.time()
        frame = self._backend.screenshot(self.source)
        # Written whole under a name that says when it was taken, then renamed: a file
        # waiting for its upload when the recorder dies is salvaged with its row.
        tmp = ctx.staging / f"{new_id()}.tmp"
        width, height = encode_image(frame, tmp)
        path = ctx.staging / staged_name(offset, taken_at)
        tmp.replace(path)
        self.bytes_written += path.stat().st_size
        store_screenshot(
            ctx.media, ctx.session_id, path, offset, taken_at, width, height, ctx.uploads
        )
        self.taken += 1


_STAGED = re.compile(r"shot-(\d+\.\d{3})-(\d+)\.webp")


def staged_name(offset: float, taken_at: float) -> str:
    return f"shot-{offset:.3f}-{round(taken_at * 1000)}.webp"


def store_screenshot(
    media: MediaLibrary,
    session_id: str,
    path: Path,
    offset: float,
    taken_at: float,
    width: int,
    height: int,
    uploads: Uploads | None = None,
) -> None:
    """Store a screenshot file with its row: through the recording's uploads when given
    (in the background for a remote blob store), else at once."""

    def add_row(attachment: Attachment) -> None:
        media.store.add_screenshot(
            SessionScreenshot(
                id=new_id(),
                session_id=session_id,
                timestamp=utc_iso(taken_at),
                media_offset=offset,
                attachment_id=attachment.id,
                hash=attachment.hash,
            )
        )

    name = f"screenshot-{offset:09.3f}.webp"
    if uploads is not None:
        uploads.submit(path, "image", name, width=width, height=height, then=add_row)
    else:
        media.ingest(path, "image", name, width=width, height=height, then=add_row)


def salvage_screenshots(session: Session, folder: Path, media: MediaLibrary) -> int:
    """Recovery: store the screenshots a dead recorder had taken but not yet stored (they
    wait for their upload to a remote blob store); drop half-written ones. Returns how
    many were stored."""
    stored = {shot.media_offset for shot in session.screenshots}
    count = 0
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        found = _STAGED.fullmatch(path.name)
        if found is None:
            path.unlink(missing_ok=True)  # half-written (.tmp) or unknown
            continue
        offset, taken_at = float(found[1]), int(found[2]) / 1000
        picture = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if offset in stored or picture is None:
            path.unlink(missing_ok=True)  # stored before the death, or damaged
            continue
        height, width = picture.shape[:2]
        store_screenshot(media, session.id, path, offset, taken_at, width, height)
        count += 1
    return count
