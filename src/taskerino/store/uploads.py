"""Media of a live recording going into a remote blob store, off the capture path.

A recorder hands each closed chunk, segment or screenshot to `Uploads.submit` and goes on.
One thread per recording ingests them in order (blob, then its rows in one transaction,
as `MediaLibrary.ingest` does). A failed upload — the bucket unreachable, the server
refusing — is retried with backoff, for as long as it takes; the file stays in the
recorder's staging folder until its rows commit, so nothing is lost meanwhile and a crash
leaves it for recovery. `drain` waits until everything submitted is stored.

When the blob store is on this machine's disk there is nothing to wait for: `submit`
ingests at once, in the caller's thread, as recorders always did.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from ..errors import InvalidInput, NotFound, StorageError
from ..models import Attachment, AttachmentType
from .base import Backoff
from .media import MediaLibrary

log = logging.getLogger("taskerino.uploads")

T = TypeVar("T")

# Short waits: an upload that failed because the bucket was away for a while should go
# through soon after it is back; the recording goes on meanwhile.
UPLOAD_BACKOFF = Backoff(base=0.5, factor=2.0, cap=5.0, jitter=0.5)
# How long ending a recording waits for uploads still failing before it gives up on them
# (their files stay in staging; the session is then left to recovery).
DRAIN_SECONDS = 600.0


@dataclass
class _Upload:
    path: Path
    type: AttachmentType
    name: str
    duration: float | None
    width: int | None
    height: int | None
    then: Callable[[Attachment], None] | None
    source: Literal["keep", "delete"]


class Uploads:
    """The uploads of one recording: a queue and the thread that works through it."""

    def __init__(
        self,
        media: MediaLibrary,
        backoff: Backoff = UPLOAD_BACKOFF,
        report: Callable[[str], None] = log.warning,
    ) -> None:
        self.media = media
        self.backoff = backoff
        self.report = report
        self.remote = media.remote  # bytes kept elsewhere: uploaded in the background
        self._queue: collections.deque[_Upload] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False  # an item is being uploaded (it left the queue)
        self._thread: threading.Thread | None = None
        self._closed = False
        # Figures for the recording stats.
        self.done = 0
        self.failed_attempts = 0
        self.bytes_uploaded = 0
        self.lost = 0  # uploads given up for good (their session is gone)
        self.last_error: str | None = None

    def submit(
        self,
        path: Path,
        type: AttachmentType,
        name: str,
        *,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        then: Callable[[Attachment], None] | None = None,
        source: Literal["keep", "delete"] = "delete",
    ) -> None:
        """Store `path` as an attachment and run `then` in the transaction that commits it:
        at once for a local blob store (errors raised here), else soon, in the background."""
        item = _Upload(path, type, name, duration, width, height, then, source)
        if not self.remote:
            self._ingest(item)
            return
        with self._cond:
            if self._closed:
                raise StorageError("the recording's uploads are closed")
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="uploads", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._busy

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until everything submitted is stored (retrying meanwhile); True when it is,
        False when `timeout` passed first (what is left stays queued, files in staging)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        """Stop taking uploads and stop the thread once the queue is empty or after the
        current attempt (files of what is left stay where they are)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def stats(self) -> dict[str, float]:
        return {
            "uploads_pending": float(self.pending),
            "uploads_failed": float(self.failed_attempts),
        }

    def _ingest(self, item: _Upload) -> None:
        self.media.ingest(
            item.path,
            item.type,
            item.name,
            duration=item.duration,
            width=item.width,
            height=item.height,
            then=item.then,
            source=item.source,
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._busy = True
            try:
                size = item.path.stat().st_size if item.path.exists() else 0
                self._upload(item)
                self.done += 1
                self.bytes_uploaded += size
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _upload(self, item: _Upload) -> None:
        attempt = 0
        while True:
            try:
                self._ingest(item)
                if attempt:
                    self.report(f"uploaded {item.name} after {attempt} failed attempt(s)")
                return
            except (NotFound, InvalidInput) as exc:
                # Nothing to retry: the session or its video row is gone. Keep the file.
                self.lost += 1
                self.report(f"gave up uploading {item.name} ({exc}); kept at {item.path}")
                return
            except Exception as exc:
                if not isinstance(exc, StorageError | OSError):
                    # Unexpected: logged with its traceback, and tried again like the rest
                    # (the file stays in staging whatever happens).
                    log.exception("upload of %s failed unexpectedly", item.name)
                attempt += 1
                self.failed_attempts += 1
                self.last_error = str(exc)
                if self._closed:
                    self.lost += 1
                    self.report(f"gave up uploading {item.name} ({exc}); kept at {item.path}")
                    return
                if attempt == 1:
                    self.report(f"upload of {item.name} failed, retrying: {exc}")
                time.sleep(self.backoff.delay(attempt))


def retrying(
    action: Callable[[], T],
    what: str,
    *,
    backoff: Backoff = UPLOAD_BACKOFF,
    timeout: float = DRAIN_SECONDS,
    report: Callable[[str], None] = log.warning,
) -> T:
    """`action()`, tried again with backoff while it raises StorageError, until `timeout`
    (then the last error is raised)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            return action()
        except StorageError as exc:
            attempt += 1
            delay = backoff.delay(attempt)
            if time.monotonic() + delay > deadline:
                raise
            if attempt == 1:
                report(f"{what} failed, retrying: {exc}")
            time.sleep(delay)
