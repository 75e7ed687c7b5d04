"""The persistence queue of spec §4, driven by a manual clock (one test uses the real one)."""

from __future__ import annotations

import itertools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from taskerino.errors import InvalidInput, StorageError
from taskerino.store.queue import PersistenceQueue, QueueEvent, SystemClock

from .clocks import ManualClock


class Sink:
    """Records every batch it is given; fails while `fail(items)` says so."""

    def __init__(self, fail: Callable[[Sequence[str]], bool] = lambda items: False) -> None:
        self.fail = fail
        self.batches: list[list[str]] = []
        self.calls: list[tuple[float, list[str]]] = []
        self.clock: ManualClock | None = None

    def __call__(self, items: Sequence[str]) -> None:
        self.calls.append((self.clock.now() if self.clock else 0.0, list(items)))
        if self.fail(items):
            raise OSError("disk on fire")
        self.batches.append(list(items))

    @property
    def items(self) -> list[str]:
        return [item for batch in self.batches for item in batch]


def failing_times(n: int) -> Callable[[Sequence[str]], bool]:
    """The first `n` calls fail, later ones succeed."""
    left = [n]

    def fail(items: Sequence[str]) -> bool:
        left[0] -= 1
        return left[0] >= 0

    return fail


class MaxRandom(random.Random):
    """Jitter that always picks the longest delay, so timelines are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


Make = Callable[..., tuple[PersistenceQueue[str], Sink, list[QueueEvent]]]


def drive(clock: ManualClock, until: Callable[[], bool], limit: int = 1000) -> None:
    """Jump the clock from deadline to deadline until `until()` holds."""
    for _ in range(limit):
        clock.settle(threads=0)
        if until():
            return
        deadline = clock.next_deadline()
        if deadline is None:
            # Nothing waits on the clock: a thread is still on its way to do so (or to end).
            time.sleep(0.001)
        else:
            clock.advance_to(deadline)
    raise AssertionError("condition not reached")


def stop(queue: PersistenceQueue[str], clock: ManualClock) -> bool:
    """shutdown() from another thread while the clock is driven, as a retry may be pending."""
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(queue.shutdown()))
    thread.start()
    drive(clock, lambda: not thread.is_alive())
    thread.join()
    return result[0]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make(clock: ManualClock) -> Iterator[Make]:
    queues: list[PersistenceQueue[str]] = []

    def factory(
        fail: Callable[[Sequence[str]], bool] = lambda items: False, **options: object
    ) -> tuple[PersistenceQueue[str], Sink, list[QueueEvent]]:
        sink = Sink(fail)
        sink.clock = clock
        options.setdefault("rng", random.Random(1))
        queue: PersistenceQueue[str] = PersistenceQueue(sink, clock=clock, **options)  # type: ignore[arg-type]
        events: list[QueueEvent] = []
        queue.subscribe(events.append)
        queues.append(queue)
        clock.settle()  # the writer is waiting: later negative checks are not races
        return queue, sink, events

    yield factory
    for queue in queues:
        stop(queue, clock)


def kinds(events: list[QueueEvent], kind: str) -> list[QueueEvent]:
    return [e for e in events if e.kind == kind]


def test_normal_items_are_batched_within_the_window(clock: ManualClock, make: Make) -> None:
    queue, sink, events = make()
    assert queue.enqueue("a")
    clock.settle()
    clock.advance_to(0.05)
    assert queue.enqueue("b")
    clock.advance_to(0.099)
    clock.settle()
    assert sink.batches == []
    clock.advance_to(0.1)
    clock.settle()
    assert sink.batches == [["a", "b"]]
    assert [(e.kind, e.priority, e.count, e.attempt) for e in events] == [
        ("enqueued", "normal", 1, 0),  # the writer woke for the first item of the window
        ("enqueued", "normal", 1, 0),
        ("written", "normal", 2, 1),
    ]
    assert queue.stats().written == 2
    assert queue.stats().pending == 0


def test_a_full_batch_does_not_wait_for_the_window(clock: ManualClock, make: Make) -> None:
    queue, sink, _ = make(max_batch=3)
    for item in "abcd":
        queue.enqueue(item)
    clock.settle()
    assert sink.batches == [["a", "b", "c"]]
    clock.advance_to(0.1)
    clock.settle()
    assert sink.batches == [["a", "b", "c"], ["d"]]


def test_critical_is_written_at_once_with_what_is_pending(clock: ManualClock, make: Make) -> None:
    queue, sink, events = make()
    queue.enqueue("n1")
    queue.enqueue("c1", "critical")
    clock.settle()
    assert clock.now() == 0.0
    assert sink.batches == [["c1", "n1"]]
    assert {(e.priority, e.count) for e in kinds(events, "written")} == {
        ("critical", 1),
        ("normal", 1),
    }


def test_low_is_written_only_when_idle(clock: ManualClock, make: Make) -> None:
    queue, sink, _ = make(idle_after=0.25)
    queue.enqueue("low1", "low")
    queue.enqueue("n1")
    clock.advance_to(0.1)
    clock.settle()
    assert sink.batches == [["n1"]]
    # Still busy: a normal item arrives, so the idle time starts again after its write.
    clock.advance_to(0.3)
    queue.enqueue("n2")
    clock.settle()
    assert clock.next_deadline() == pytest.approx(0.4)
    clock.advance_to(0.4)
    clock.settle()
    assert sink.batches == [["n1"], ["n2"]]
    assert clock.next_deadline() == pytest.approx(0.65)
    clock.advance_to(0.64)
    clock.settle()
    assert sink.items == ["n1", "n2"]
    clock.advance_to(0.65)
    clock.settle()
    assert sink.batches[-1] == ["low1"]


def test_flush_writes_low_and_normal_items_without_waiting(clock: ManualClock, make: Make) -> None:
    queue, sink, _ = make()
    queue.enqueue("l", "low")
    queue.enqueue("n")
    assert queue.flush()
    assert clock.now() == 0.0
    assert sink.batches == [["n", "l"]]


def test_bound_drops_low_first_then_oldest_normal(clock: ManualClock, make: Make) -> None:
    queue, sink, events = make(bound=4)
    assert queue.enqueue("l1", "low")
    assert queue.enqueue("l2", "low")
    assert queue.enqueue("n1")
    assert queue.enqueue("n2")
    assert queue.enqueue("n3")  # full: the oldest low item goes
    assert queue.enqueue("l3", "low")  # full: the oldest low item goes
    assert queue.enqueue("n4")  # full: l3 goes
    assert not queue.enqueue("l4", "low")  # full and no low item queued: refused
    assert queue.enqueue("n5")  # full of normal: the oldest normal item goes
    assert queue.enqueue("c1", "critical")  # never dropped: exceeds the bound
    assert [(e.priority, e.count) for e in kinds(events, "dropped")] == [
        ("low", 1),
        ("low", 1),
        ("low", 1),
        ("low", 1),
        ("normal", 1),
    ]
    assert queue.flush()
    assert sink.items == ["c1", "n2", "n3", "n4", "n5"]
    stats = queue.stats()
    assert (stats.enqueued, stats.written, stats.dropped, stats.pending) == (9, 5, 5, 0)


def test_critical_is_never_dropped_even_when_full(clock: ManualClock, make: Make) -> None:
    # The first write fails, so the writer backs off and everything else piles up.
    queue, sink, events = make(failing_times(1), bound=3, rng=MaxRandom())
    queue.enqueue("first", "critical")
    clock.settle()
    for i in range(6):
        assert queue.enqueue(f"c{i}", "critical")
    assert not queue.enqueue("late-low", "low")
    assert not queue.enqueue("late-normal")  # everything queued is critical: refused
    assert queue.stats().pending == 7
    drive(clock, lambda: queue.stats().pending == 0)
    assert sink.items == ["first"] + [f"c{i}" for i in range(6)]
    assert [e.priority for e in kinds(events, "dropped")] == ["low", "normal"]


def test_retries_back_off_exponentially_with_full_jitter(clock: ManualClock, make: Make) -> None:
    queue, sink, events = make(
        failing_times(4), backoff_base=0.1, backoff_max=0.5, rng=random.Random(7)
    )
    queue.enqueue("x", "critical")
    drive(clock, lambda: sink.items == ["x"])
    times = [t for t, _ in sink.calls]
    delays = [b - a for a, b in itertools.pairwise(times)]
    caps = [0.1, 0.2, 0.4, 0.5]  # base·2^(n-1), capped at backoff_max
    expected = random.Random(7)
    assert delays == pytest.approx([expected.uniform(0, cap) for cap in caps])
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    retried = kinds(events, "retried")
    assert [e.attempt for e in retried] == [1, 2, 3, 4]
    assert {e.error for e in retried} == {"OSError: disk on fire"}
    assert [(e.attempt, e.count) for e in kinds(events, "written")] == [(5, 1)]
    assert queue.stats().retried == 4


def test_items_wait_behind_a_batch_in_retry(clock: ManualClock, make: Make) -> None:
    queue, sink, _ = make(failing_times(1), rng=MaxRandom(), backoff_base=1.0)
    queue.enqueue("a", "critical")
    clock.settle()
    queue.enqueue("b", "critical")  # must not overtake "a"
    clock.settle()
    assert sink.items == []
    clock.advance_to(1.0)
    clock.settle()
    assert sink.batches == [["a"], ["b"]]


def test_a_poisoned_item_fails_alone_after_max_retries(clock: ManualClock, make: Make) -> None:
    queue, sink, events = make(lambda items: "poison" in items, max_retries=3)
    for item in ("a", "poison", "b"):
        queue.enqueue(item)
    drive(clock, lambda: queue.stats().pending == 0)
    assert sink.items == ["a", "b"]
    [failed] = kinds(events, "failed")
    assert (failed.priority, failed.count, failed.error) == ("normal", 1, "OSError: disk on fire")
    assert failed.attempt == 5  # 1 try + 3 retries + 1 alone
    assert [e.attempt for e in kinds(events, "retried")] == [1, 2, 3]
    # The queue carries on.
    queue.enqueue("c", "critical")
    clock.settle()
    assert sink.items == ["a", "b", "c"]
    stats = queue.stats()
    assert (stats.written, stats.failed, stats.pending) == (3, 1, 0)


def test_a_single_item_fails_after_max_retries(clock: ManualClock, make: Make) -> None:
    queue, sink, events = make(lambda items: True, max_retries=2)
    queue.enqueue("doomed", "critical")
    drive(clock, lambda: queue.stats().failed == 1)
    assert sink.items == []
    [failed] = kinds(events, "failed")
    assert (failed.count, failed.attempt, failed.error) == (1, 3, "OSError: disk on fire")


def test_flush_waits_for_items_in_retry(clock: ManualClock, make: Make) -> None:
    queue, sink, _ = make(failing_times(2))
    queue.enqueue("x")
    results: list[bool] = []
    flusher = threading.Thread(target=lambda: results.append(queue.flush()))
    flusher.start()
    clock.settle(threads=2)  # the writer backs off, the flusher waits
    assert sink.calls and sink.items == []
    assert flusher.is_alive()
    drive(clock, lambda: not flusher.is_alive())
    assert results == [True]
    assert sink.items == ["x"]
    assert len(sink.calls) == 3


def test_flush_times_out_on_the_clock(clock: ManualClock, make: Make) -> None:
    queue, sink, _ = make(failing_times(1), rng=MaxRandom(), backoff_base=1.0)
    queue.enqueue("x")
    results: list[bool] = []
    flusher = threading.Thread(target=lambda: results.append(queue.flush(timeout=0.5)))
    flusher.start()
    clock.settle(threads=2)
    clock.advance_to(0.5)
    flusher.join(5)
    assert results == [False]
    assert sink.items == []


def test_shutdown_with_items_in_retry_loses_nothing(clock: ManualClock, make: Make) -> None:
    queue, sink, _ = make(failing_times(2))
    queue.enqueue("a")
    queue.enqueue("b", "low")
    queue.enqueue("c", "critical")
    clock.settle()
    assert sink.calls  # the first attempt failed; a retry is pending
    assert stop(queue, clock)
    assert sorted(sink.items) == ["a", "b", "c"]
    assert queue.stats().pending == 0
    assert queue.shutdown()  # twice is fine
    with pytest.raises(StorageError, match="shut down"):
        queue.enqueue("d")


def test_shutdown_reports_what_could_not_be_written(clock: ManualClock, make: Make) -> None:
    queue, sink, events = make(lambda items: True, max_retries=1)
    queue.enqueue("a")
    queue.enqueue("b")
    assert stop(queue, clock)
    assert sink.items == []
    assert sum(e.count for e in kinds(events, "failed")) == 2
    assert queue.stats().failed == 2


def test_enqueued_events_are_counted_not_sent_per_item(clock: ManualClock, make: Make) -> None:
    queue, _, events = make(max_batch=1000)
    for i in range(300):
        queue.enqueue(str(i))
    clock.advance_to(0.1)
    clock.settle()
    enqueued = kinds(events, "enqueued")
    assert sum(e.count for e in enqueued) == 300
    assert len(enqueued) < 300
    assert events.index(enqueued[-1]) < events.index(kinds(events, "written")[0])


def test_a_failing_subscriber_does_not_stop_the_writer(
    clock: ManualClock, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    queue, sink, _ = make()

    def broken(event: QueueEvent) -> None:
        raise RuntimeError("subscriber bug")

    queue.subscribe(broken)
    with caplog.at_level(logging.ERROR):
        queue.enqueue("x", "critical")
        clock.settle()
    assert sink.items == ["x"]
    assert "subscriber failed" in caplog.text


def test_unknown_priority_is_refused(make: Make) -> None:
    queue, _, _ = make()
    with pytest.raises(InvalidInput, match="critical, normal, low"):
        queue.enqueue("x", "urgent")  # type: ignore[arg-type]


def test_context_manager_shuts_down() -> None:
    sink = Sink()
    with PersistenceQueue(sink) as queue:
        queue.enqueue("x", "low")
    assert sink.items == ["x"]
    with pytest.raises(StorageError):
        queue.enqueue("y")


def test_concurrent_producers_each_item_once_in_order() -> None:
    batches: list[list[tuple[int, int]]] = []
    queue: PersistenceQueue[tuple[int, int]] = PersistenceQueue(
        lambda batch: batches.append(list(batch)), clock=SystemClock(), bound=100_000
    )

    def produce(producer: int) -> None:
        for i in range(10_000):
            assert queue.enqueue((producer, i))

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert queue.shutdown(timeout=30)
    written = [item for batch in batches for item in batch]
    assert len(written) == 80_000
    for producer in range(8):
        assert [i for p, i in written if p == producer] == list(range(10_000))
    assert all(len(batch) <= 500 for batch in batches)


def test_end_to_end_with_sqlite_and_the_real_clock(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "q.db", check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")

    def sink(items: Sequence[str]) -> None:
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO t (payload) VALUES (?)", [(i,) for i in items])

    def rows() -> list[str]:
        return [r[0] for r in db.execute("SELECT payload FROM t ORDER BY id")]

    queue: PersistenceQueue[str] = PersistenceQueue(sink, batch_window=0.05, idle_after=0.05)
    started = time.monotonic()
    queue.enqueue("n")
    # Real time passes here: this is the one test that waits for the window itself.
    while not rows() and time.monotonic() - started < 5:
        time.sleep(0.005)
    assert rows() == ["n"]
    assert time.monotonic() - started < 1.0
    queue.enqueue("l", "low")
    queue.enqueue("c", "critical")
    assert queue.shutdown(timeout=5)
    assert sorted(rows()) == ["c", "l", "n"]
    db.close()
