"""Waiting for changes instead of polling for them: topics, watches and their registry.

A `Topic` names something that changes (a session's commands, the job queue, a session's
state, a session's stats). `Store.watch(topics)` gives a `Watch`; its `wait` returns as
soon as a change of one of its topics commits, in any process. Each back end feeds its
watches through a `Watchers` registry: PostgreSQL from LISTEN/NOTIFY, SQLite from its
`data_version` (see each store's module).

Never missed, maybe spurious: a change committed after `watch()` returned makes the next
`wait` return True at once, however late it is called; a back end may also wake a watch
for a change it cannot tell apart, or after it may have missed one (it lost its
connection). So the caller makes the watch first, then looks at what it waits for, then
waits, then looks again — and keeps its timeout bounded: when the back end cannot listen
(the database is away) a wait simply runs to its timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from ..errors import InvalidInput

TopicKind = Literal["commands", "jobs", "session", "stats"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("commands", "jobs", "session", "stats")

# How often a wait with a `stop` event looks at it (an Event cannot be waited on together
# with anything else).
STOP_CHECK_SECONDS = 0.05


@dataclass(frozen=True)
class Topic:
    """Something a process can wait for.

    - `commands` of a session: a command was pushed for its recorder (`push_command`);
    - `jobs`: a job became queued (enqueued, released, failed with a retry to come);
    - `session`: a session was created, or its status, pause, end, name or enrichment
      changed (`update_session`, `set_stage_status`); without a session id, any session;
    - `stats` of a session: its recorder wrote new stats (`write_stats`).
    """

    kind: TopicKind
    session_id: str | None = None  # None: of every session (`jobs` has none)

    def __post_init__(self) -> None:
        if self.kind not in TOPIC_KINDS:
            raise InvalidInput(f"unknown topic {self.kind!r}; allowed: {', '.join(TOPIC_KINDS)}")
        if self.kind == "jobs" and self.session_id is not None:
            raise InvalidInput("the jobs topic is not a session's")
        if self.kind in ("commands", "stats") and not self.session_id:
            raise InvalidInput(f"the {self.kind} topic is a session's: name the session")

    @classmethod
    def commands(cls, session_id: str) -> Topic:
        return cls("commands", session_id)

    @classmethod
    def jobs(cls) -> Topic:
        return cls("jobs")

    @classmethod
    def session(cls, session_id: str | None = None) -> Topic:
        return cls("session", session_id)

    @classmethod
    def stats(cls, session_id: str) -> Topic:
        return cls("stats", session_id)

    def covers(self, kind: str, session_id: str) -> bool:
        """Whether a change of `kind` to `session_id` ('' for none) is one of this topic's."""
        return kind == self.kind and (self.session_id is None or self.session_id == session_id)


class Watch:
    """Waits for changes of its topics. Made by `Store.watch`; close it when done (it is a
    context manager). One thread waits on a watch at a time."""

    def __init__(self, topics: Iterable[Topic], forget: Callable[[Watch], None]) -> None:
        self.topics = frozenset(topics)
        if not self.topics:
            raise InvalidInput("a watch needs at least one topic")
        self.kinds = frozenset(topic.kind for topic in self.topics)
        self._forget = forget
        self._changed = threading.Condition(threading.Lock())
        self._fired = False
        self._closed = False

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until one of the topics changed since the last wait returned (or since the
        watch was made); True then, at once if that happened already. False when `timeout`
        seconds passed first, `stop` was set or the watch was closed. Never raises."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while not self._fired and not self._closed:
                if stop is not None and stop.is_set():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left if stop is None else min(left, STOP_CHECK_SECONDS))
            fired, self._fired = self._fired, False
            return fired and not self._closed

    def fire(self) -> None:
        """One of the topics changed (or may have): wake the wait. For back ends."""
        with self._changed:
            self._fired = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def covers(self, kind: str, session_id: str) -> bool:
        return any(topic.covers(kind, session_id) for topic in self.topics)

    def close(self) -> None:
        """Stop watching; a wait in progress returns False. Safe to call twice."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        self._forget(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Watchers:
    """The open watches of one store object, for its back end to wake."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: set[Watch] = set()

    def add(self, topics: Iterable[Topic]) -> Watch:
        watch = Watch(topics, self._remove)
        with self._lock:
            self._watches.add(watch)
        return watch

    def _remove(self, watch: Watch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def current(self) -> list[Watch]:
        with self._lock:
            return list(self._watches)

    def kinds(self) -> set[TopicKind]:
        """Every kind of topic some open watch waits for."""
        return {kind for watch in self.current() for kind in watch.kinds}

    def changed(self, kind: str, session_id: str) -> None:
        """A change of `kind` to `session_id` ('' for none) committed: wake its watches."""
        for watch in self.current():
            if watch.covers(kind, session_id):
                watch.fire()

    def fire(self, kinds: Iterable[str] | None = None) -> None:
        """Wake every watch (of these kinds): changes may have been missed."""
        wanted = None if kinds is None else set(kinds)
        for watch in self.current():
            if wanted is None or watch.kinds & wanted:
                watch.fire()

    def close(self) -> None:
        for watch in self.current():
            watch.close()
