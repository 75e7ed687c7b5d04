"""A clock for tests: time moves only when the test says so (see `store.queue.Clock`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from taskerino.store.queue import ClockCondition


@dataclass
class _Waiter:
    condition: _ManualCondition
    deadline: float | None
    woken: bool = False


class ManualClock:
    """A clock that moves only when a test calls `advance`; waits never time out by themselves.

    `settle()` blocks (in real time) until every other thread that waits on this clock is
    back in a wait that nothing has woken yet: after it, a negative assertion ("not
    written yet") is meaningful rather than a race.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._conditions: list[_ManualCondition] = []
        self._waiters: dict[int, _Waiter] = {}
        self._threads: dict[int, threading.Thread] = {}

    def now(self) -> float:
        return self._now

    def condition(self, lock: threading.Lock) -> ClockCondition:
        condition = _ManualCondition(self, lock)
        with self._lock:
            self._conditions.append(condition)
        return condition

    def advance(self, seconds: float) -> None:
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Move to exactly `when` (advancing in steps can drift by a float ulp)."""
        with self._lock:
            if when < self._now:
                raise ValueError(f"a clock cannot go back from {self._now} to {when}")
            self._now = when
            conditions = list(self._conditions)
        # Wake every waiter: each re-reads the time and decides whether its deadline passed.
        for condition in conditions:
            with condition.lock:
                condition.notify_all()

    def next_deadline(self) -> float | None:
        """The earliest time a waiting thread waits for, if any."""
        with self._lock:
            deadlines = [
                w.deadline for w in self._waiters.values() if w.deadline is not None and not w.woken
            ]
        return min(deadlines, default=None)

    def settle(self, threads: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least `threads` other threads wait on this clock, none of them woken."""
        me = threading.current_thread()
        give_up = time.monotonic() + timeout
        with self._lock:
            while True:
                for ident in [i for i, t in self._threads.items() if not t.is_alive()]:
                    del self._threads[ident]
                others = [i for i, t in self._threads.items() if t is not me]
                waiting = [i for i in others if i in self._waiters and not self._waiters[i].woken]
                if len(others) >= threads and len(waiting) == len(others):
                    return
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"threads did not settle within {timeout} s")
                # Poll as well: a thread may end without waiting on the clock again.
                self._changed.wait(min(remaining, 0.01))


class _ManualCondition:
    def __init__(self, clock: ManualClock, lock: threading.Lock) -> None:
        self._clock = clock
        self.lock = lock
        self._cond = threading.Condition(lock)

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout <= 0:
            return False
        clock = self._clock
        me = threading.current_thread()
        ident = threading.get_ident()
        with clock._lock:
            deadline = None if timeout is None else clock._now + timeout
            clock._waiters[ident] = _Waiter(self, deadline)
            clock._threads[ident] = me
            clock._changed.notify_all()
        self._cond.wait()
        with clock._lock:
            del clock._waiters[ident]
            clock._changed.notify_all()
            return deadline is None or clock._now < deadline

    def notify(self, n: int = 1) -> None:
        # Wake all: `settle` cannot know which waiter a single notify would pick.
        self.notify_all()

    def notify_all(self) -> None:
        clock = self._clock
        with clock._lock:
            for waiter in clock._waiters.values():
                if waiter.condition is self:
                    waiter.woken = True
            clock._changed.notify_all()
        self._cond.notify_all()
