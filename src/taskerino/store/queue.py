"""The persistence queue (spec §4): the non-blocking way to save.

Callers `enqueue` items with a priority; one writer thread hands them to a `sink` in
batches (one batch = one store transaction). Enqueue only takes a short lock to append to
an in-memory deque, so it never waits on disk.

- `critical`: the writer wakes at once; whatever else is pending may ride along.
- `normal`: batched, written within `batch_window` (100 ms) of the first pending one, or
  as soon as `max_batch` are pending.
- `low`: written when no critical/normal item has been pending or written for
  `idle_after` seconds (and always by `flush`/`shutdown`).

When `bound` queued items are reached: the oldest `low` item is dropped to make room; with
no `low` item queued, a new `low` item is refused (`enqueue` returns False), and a new
`normal` item pushes out the oldest queued `normal` one (the newest state is usually the
one worth keeping). `critical` items are never dropped: they push out a `low` item when
there is one and otherwise exceed the bound. Every drop is counted and reported by a
`dropped` event. Items taken by the writer (in flight or being retried) no longer count
against the bound.

A failing batch is retried with exponential backoff and full jitter, `max_retries` times;
meanwhile later items wait, so order within a priority class is kept. After the last
retry the batch is split and each item tried once alone, so one poisoned item does not
fail its neighbours; what still fails is reported by a `failed` event and dropped from
the queue. Order across classes is not kept: a critical item overtakes pending normal ones.

Events are delivered to subscribers synchronously: `dropped` on the enqueuing thread
(after the lock is released), all others on the writer thread. `enqueued` is not one
callback per item, which would put subscriber code on the hot path: the hot path only
counts, and the writer reports the counts (one event per priority, `count` items) each
time it wakes, always before it writes those items.

Time comes from a `Clock` (`SystemClock` in production, a manual clock in the tests), so the
windows and backoff delays are tested without sleeping. The writer is a daemon thread, so
`atexit.register(queue.shutdown)` works: the interpreter does not wait for the thread
before running exit handlers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Literal, Protocol, TypeVar

from taskerino.errors import InvalidInput, StorageError

__all__ = [
    "Clock",
    "ClockCondition",
    "PersistenceQueue",
    "Priority",
    "QueueEvent",
    "QueueStats",
    "SystemClock",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Priority = Literal["critical", "normal", "low"]
EventKind = Literal["enqueued", "written", "retried", "failed", "dropped"]
PRIORITIES: tuple[Priority, ...] = ("critical", "normal", "low")


# --- clocks -------------------------------------------------------------------------------


class ClockCondition(Protocol):
    """A condition variable whose timeouts are measured by its clock.

    The caller holds the lock the condition was made with. `wait` may return early
    (callers re-check their predicate and the time), never late.
    """

    def wait(self, timeout: float | None = None) -> bool: ...

    def notify(self, n: int = 1) -> None: ...

    def notify_all(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds, and condition variables that wait in the same seconds."""

    def now(self) -> float: ...

    def condition(self, lock: threading.Lock) -> ClockCondition: ...


class SystemClock:
    """The real monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    def condition(self, lock: threading.Lock) -> ClockCondition:
        return threading.Condition(lock)


# --- the queue ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """What happened to `count` items of one priority.

    `attempt` is the attempt number the event is about (1 = first try) for `written`,
    `retried` and `failed`, and 0 for `enqueued` and `dropped`. `error` is set for
    `retried` and `failed`.
    """

    kind: EventKind
    priority: Priority
    count: int
    error: str | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Item counters since the queue started. `retried` counts item-retries; `pending` is
    accepted items not yet written, failed or dropped (queued, in flight or retrying)."""

    enqueued: int
    written: int
    retried: int
    failed: int
    dropped: int
    pending: int


class _Lane(Generic[T]):
    """The FIFO of one priority class, with the per-class sequence counters that `flush`
    compares: items complete in the order they were enqueued within a class."""

    __slots__ = ("done", "enqueued", "flush_to", "items", "priority", "reported", "since", "taken")

    def __init__(self, priority: Priority) -> None:
        self.priority: Priority = priority
        self.items: deque[T] = deque()
        self.enqueued = 0  # accepted so far
        self.taken = 0  # left the deque (into a batch, or dropped)
        self.done = 0  # written, failed or dropped
        self.flush_to = 0  # a flush waits for the first `flush_to` items
        self.reported = 0  # covered by `enqueued` events
        self.since = 0.0  # when the deque last became non-empty


@dataclass(slots=True)
class _Batch(Generic[T]):
    items: list[T]
    counts: dict[Priority, int]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class PersistenceQueue(Generic[T]):
    """A bounded, prioritised write queue in front of a batch `sink`.

    `sink(items)` must write the items atomically (one transaction) and raise on failure.
    It is only ever called from the writer thread, one batch at a time.
    """

    def __init__(
        self,
        sink: Callable[[Sequence[T]], None],
        *,
        clock: Clock | None = None,
        bound: int = 1000,
        batch_window: float = 0.1,
        idle_after: float = 0.25,
        max_batch: int = 500,
        max_retries: int = 5,
        backoff_base: float = 0.1,
        backoff_max: float = 2.0,
        rng: random.Random | None = None,
        name: str = "taskerino-persistence-queue",
    ) -> None:
        if bound < 1 or max_batch < 1:
            raise InvalidInput(f"bound and max_batch must be at least 1; got {bound}, {max_batch}")
        if min(batch_window, idle_after, backoff_base, backoff_max) < 0 or max_retries < 0:
            raise InvalidInput("windows, delays and max_retries must not be negative")
        self._sink = sink
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._bound = bound
        self._batch_window = batch_window
        self._idle_after = idle_after
        self._max_batch = max_batch
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._rng = rng if rng is not None else random.Random()

        self._lock = threading.Lock()
        self._wakeup = self._clock.condition(self._lock)  # the writer waits here
        self._done = self._clock.condition(self._lock)  # flush waits here
        self._critical: _Lane[T] = _Lane("critical")
        self._normal: _Lane[T] = _Lane("normal")
        self._low: _Lane[T] = _Lane("low")
        self._lanes: dict[str, _Lane[T]] = {
            "critical": self._critical,
            "normal": self._normal,
            "low": self._low,
        }
        self._queued = 0
        self._writer_waiting = False
        self._closed = False
        self._busy_at = self._clock.now()  # last critical/normal write, for `idle_after`
        self._written = self._retried = self._failed = self._dropped = 0
        self._subscribers: tuple[Callable[[QueueEvent], None], ...] = ()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- callers' side ---

    def enqueue(self, item: T, priority: Priority = "normal") -> bool:
        """Queue `item`; False only if it was refused because the queue is full (event sent).

        Raises StorageError after `shutdown()`.
        """
        dropped: Priority | None = None
        with self._lock:
            if self._closed:
                raise StorageError(
                    "the persistence queue is shut down; nothing can be enqueued any more"
                )
            lane = self._lanes.get(priority)
            if lane is None:
                raise InvalidInput(f"unknown priority {priority!r}; allowed: critical, normal, low")
            accepted = True
            if self._queued >= self._bound:
                dropped, accepted = self._make_room(lane)
            if accepted:
                queue = lane.items
                if not queue:
                    lane.since = self._clock.now()
                queue.append(item)
                lane.enqueued += 1
                self._queued += 1
                # Wake the writer only when it has something new to decide.
                if self._writer_waiting and (
                    lane is self._critical or len(queue) == 1 or len(queue) == self._max_batch
                ):
                    self._wakeup.notify()
        if dropped is not None:
            self._emit(QueueEvent("dropped", dropped, 1))
        return accepted

    def _make_room(self, lane: _Lane[T]) -> tuple[Priority | None, bool]:
        """Called full, under the lock: (priority of the item dropped, whether to accept)."""
        if self._low.items:
            victim = self._low
        elif lane is self._low:
            self._dropped += 1
            return "low", False
        elif lane is self._normal and self._normal.items:
            victim = self._normal
        elif lane is self._normal:
            # Everything queued is critical: refuse the normal item rather than drop one.
            self._dropped += 1
            return "normal", False
        else:
            return None, True  # critical: exceed the bound
        victim.items.popleft()
        victim.taken += 1
        victim.done += 1
        self._queued -= 1
        self._dropped += 1
        self._done.notify_all()
        return victim.priority, True

    def subscribe(self, callback: Callable[[QueueEvent], None]) -> Callable[[], None]:
        """Call `callback` for every event from now on; returns a function that unsubscribes.

        Callbacks run on the writer thread (on the enqueuing thread for `dropped`) and must
        be quick and thread-safe. An exception in a callback is logged and ignored.
        """
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(c for c in self._subscribers if c is not callback)

        return unsubscribe

    def stats(self) -> QueueStats:
        with self._lock:
            lanes = self._lanes.values()
            return QueueStats(
                enqueued=sum(lane.enqueued for lane in lanes),
                written=self._written,
                retried=self._retried,
                failed=self._failed,
                dropped=self._dropped,
                pending=sum(lane.enqueued - lane.done for lane in lanes),
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item enqueued before this call is written or has definitively
        failed (or was dropped). False if `timeout` (clock seconds) passed first, or the
        writer is gone. Pending windows are cut short: flushed items are written at once."""
        if threading.current_thread() is self._thread:
            raise StorageError("flush() cannot be called from a queue event callback")
        with self._lock:
            targets = [(lane, lane.enqueued) for lane in self._lanes.values()]
            for lane, target in targets:
                lane.flush_to = max(lane.flush_to, target)
            if self._writer_waiting:
                self._wakeup.notify()
            deadline = None if timeout is None else self._clock.now() + timeout
            while any(lane.done < target for lane, target in targets):
                if not self._thread.is_alive():
                    return False
                if deadline is None:
                    self._done.wait()
                else:
                    remaining = deadline - self._clock.now()
                    if remaining <= 0:
                        return False
                    self._done.wait(remaining)
            return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new items, write everything queued (retries included), stop the writer.

        Safe from any thread and any number of times. True when everything was written or
        reported failed and the writer stopped; False if `timeout` passed first (the writer
        keeps going in the background) or when called from an event callback.
        """
        with self._lock:
            self._closed = True
            if self._writer_waiting:
                self._wakeup.notify()
        if threading.current_thread() is self._thread:
            return False  # from a callback: the writer cannot wait for itself
        if not self.flush(timeout):
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> PersistenceQueue[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # --- the writer thread ---

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    unreported = self._take_unreported()
                    batch = None
                    if not unreported:
                        batch, wake_at = self._next_batch()
                        if batch is None:
                            if self._closed and self._queued == 0:
                                return
                            self._writer_waiting = True
                            now = self._clock.now()
                            if wake_at is None:
                                self._wakeup.wait()
                            elif wake_at > now:
                                self._wakeup.wait(wake_at - now)
                            self._writer_waiting = False
                            continue
                for priority, count in unreported:
                    self._emit(QueueEvent("enqueued", priority, count))
                if batch is not None:
                    self._write(batch)
        except BaseException:
            log.exception("the persistence queue writer stopped unexpectedly")
            raise
        finally:
            with self._lock:
                self._closed = True
                self._done.notify_all()

    def _take_unreported(self) -> list[tuple[Priority, int]]:
        counts = []
        for lane in self._lanes.values():
            if lane.enqueued > lane.reported:
                counts.append((lane.priority, lane.enqueued - lane.reported))
                lane.reported = lane.enqueued
        return counts

    def _next_batch(self) -> tuple[_Batch[T] | None, float | None]:
        """Under the lock: the batch to write now, else None and when to look again."""
        crit, norm, low = self._critical, self._normal, self._low
        now = self._clock.now()
        closing = self._closed
        take_normal = bool(norm.items) and (
            bool(crit.items)
            or closing
            or norm.taken < norm.flush_to
            or len(norm.items) >= self._max_batch
            or now >= norm.since + self._batch_window
        )
        idle_at = self._busy_at + self._idle_after
        take_low = bool(low.items) and (
            closing
            or low.taken < low.flush_to
            or (not crit.items and not norm.items and now >= idle_at)
        )
        if not (crit.items or take_normal or take_low):
            if norm.items:
                return None, norm.since + self._batch_window
            return None, (idle_at if low.items else None)
        items: list[T] = []
        counts: dict[Priority, int] = {}
        for lane, take in ((crit, True), (norm, take_normal), (low, take_low)):
            n = min(len(lane.items), self._max_batch - len(items)) if take else 0
            if n:
                popleft = lane.items.popleft
                items.extend(popleft() for _ in range(n))
                lane.taken += n
                counts[lane.priority] = n
        self._queued -= len(items)
        return _Batch(items, counts), None

    def _write(self, batch: _Batch[T]) -> None:
        attempt = 1
        error = ""
        while True:
            try:
                self._sink(batch.items)
            except Exception as exc:
                error = _describe(exc)
                if attempt > self._max_retries:
                    break
                # Full jitter: uniform in [0, min(cap, base·2^(n-1))].
                cap = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
                delay = self._rng.uniform(0.0, cap)
                with self._lock:
                    self._retried += len(batch.items)
                self._emit_counts("retried", batch.counts, error, attempt)
                self._pause(delay)
                attempt += 1
            else:
                self._emit_counts("written", batch.counts, None, attempt)
                self._finish(batch.counts, batch.counts, {})
                return
        if len(batch.items) == 1:
            self._emit_counts("failed", batch.counts, error, attempt)
            self._finish(batch.counts, {}, batch.counts)
            return
        # Last chance, one item at a time, so that one bad item fails alone.
        attempt += 1
        written: dict[Priority, int] = {}
        failed: dict[Priority, int] = {}
        errors: dict[Priority, str] = {}
        position = 0
        for priority, count in batch.counts.items():
            for item in batch.items[position : position + count]:
                try:
                    self._sink([item])
                except Exception as exc:
                    failed[priority] = failed.get(priority, 0) + 1
                    errors[priority] = _describe(exc)
                else:
                    written[priority] = written.get(priority, 0) + 1
            position += count
        self._emit_counts("written", written, None, attempt)
        for priority, count in failed.items():
            self._emit(QueueEvent("failed", priority, count, errors[priority], attempt))
        self._finish(batch.counts, written, failed)

    def _pause(self, seconds: float) -> None:
        """Back off on the clock; new items (even critical) wait, to keep order per class."""
        with self._lock:
            until = self._clock.now() + seconds
            while (now := self._clock.now()) < until:
                self._wakeup.wait(until - now)

    def _finish(
        self,
        taken: dict[Priority, int],
        written: dict[Priority, int],
        failed: dict[Priority, int],
    ) -> None:
        with self._lock:
            for priority, count in taken.items():
                self._lanes[priority].done += count
            self._written += sum(written.values())
            self._failed += sum(failed.values())
            if "critical" in taken or "normal" in taken:
                self._busy_at = self._clock.now()
            self._done.notify_all()

    def _emit_counts(
        self, kind: EventKind, counts: dict[Priority, int], error: str | None, attempt: int
    ) -> None:
        for priority, count in counts.items():
            if count:
                self._emit(QueueEvent(kind, priority, count, error, attempt))

    def _emit(self, event: QueueEvent) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("a persistence queue subscriber failed on %s", event)
