"""The one family of errors Taskerino raises on purpose.

The CLI maps `InvalidInput` to exit status 2 and every other `TaskerinoError` to 1;
the web layer maps them to HTTP statuses. Domain code never raises anything else on
purpose.
"""

from __future__ import annotations


class TaskerinoError(Exception):
    """Base of every expected error. `details` carries machine-readable context."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class InvalidInput(TaskerinoError):
    """The caller asked for something not allowed; the message says what is allowed."""


class NotFound(TaskerinoError):
    """A session, attachment or recording that does not exist."""


class StorageError(TaskerinoError):
    """The store or blob store could not read or write (corrupt, full, unwritable)."""


class LeaseLost(StorageError):
    """A worker's lease on a job expired or was taken over: the worker must stop, and the
    call that raised this changed nothing."""


class CaptureError(TaskerinoError):
    """A screen, window or audio source could not be captured."""


class RecorderError(TaskerinoError):
    """A recorder failed to start or stopped with an error."""


class EnrichmentError(TaskerinoError):
    """An enrichment stage (OCR, transcription, chapters) could not run or read its input."""
