"""Steering a session that another process records: pause, resume and end through the
store's command table, then waiting (`Topic.session`) until the change shows.

What the caller is told is what happened: a command the recorder never took is withdrawn
when time runs out, so it cannot take effect later behind the caller's back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from ..errors import InvalidInput, RecorderError, TaskerinoError
from ..models import Session, SessionStatus
from ..store.base import Store
from ..store.watch import Topic, Watch

Command = Literal["pause", "resume", "end"]
EXPECT: dict[Command, SessionStatus] = {"pause": "paused", "resume": "active", "end": "completed"}
TIMEOUT: dict[Command, float] = {"pause": 10.0, "resume": 10.0, "end": 120.0}
TERMINAL: tuple[SessionStatus, ...] = ("completed", "interrupted")
# The session's changes wake the steering (`Topic.session`); it also looks this often,
# to notice a recorder that died. Without a watch it polls.
LOOK_SECONDS = 0.5
POLL_SECONDS = 0.05


class Steering:
    def __init__(
        self,
        store: Store,
        recorder_alive: Callable[[str], bool],
        recover: Callable[[], object],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.recorder_alive = recorder_alive
        self.recover = recover
        self._sleep = sleep
        self._clock = clock

    def steer(self, session_id: str, command: Command, timeout: float | None = None) -> Session:
        expect = EXPECT[command]
        session = self.store.get_session(session_id)
        if session.status in TERMINAL:
            if command == "end":
                return session
            raise InvalidInput(
                f"session {session_id} is {session.status}: only a live session can be "
                f"{'paused' if command == 'pause' else 'resumed'}"
            )
        if session.status == expect:
            return session
        if not self.recorder_alive(session_id):
            return self._recovered(session_id, command)
        # Watching before the command goes out: the change it makes cannot slip by.
        try:
            watch: Watch | None = self.store.watch([Topic.session(session_id)])
        except TaskerinoError:
            watch = None
        try:
            self.store.push_command(session_id, command)
            deadline = self._clock() + (TIMEOUT[command] if timeout is None else timeout)
            while (left := deadline - self._clock()) > 0:
                session = self.store.get_session(session_id)
                if session.status == expect or session.status in TERMINAL:
                    return session
                if not self.recorder_alive(session_id):
                    return self._recovered(session_id, command)
                if watch is None:
                    self._sleep(min(POLL_SECONDS, left))
                else:
                    watch.wait(min(LOOK_SECONDS, left))
        finally:
            if watch is not None:
                watch.close()
        return self._timed_out(session_id, command)

    def _recovered(self, session_id: str, command: Command) -> Session:
        """The recorder is gone: recovery marks the session interrupted."""
        self.recover()
        session = self.store.get_session(session_id)
        if command != "end" and session.status in TERMINAL:
            raise RecorderError(
                f"the recorder of session {session_id} is gone: the session was marked "
                f"{session.status} with what it recorded, so it cannot be {command}d"
            )
        return session

    def _timed_out(self, session_id: str, command: Command) -> Session:
        with self.store.transaction():
            pending = self.store.take_commands(session_id)
            for other in pending:
                if other != command:
                    self.store.push_command(session_id, other)  # not ours: put it back
        if command in pending:
            raise RecorderError(
                f"the recorder of session {session_id} did not respond within "
                f"{TIMEOUT[command]:g} s (is it stopped or overloaded?): the {command} was "
                "withdrawn and nothing changed"
            )
        session = self.store.get_session(session_id)
        if session.status == EXPECT[command] or session.status in TERMINAL:
            return session
        raise RecorderError(
            f"the recorder of session {session_id} took the {command} command but has not "
            f"carried it out within {TIMEOUT[command]:g} s; it may still do so — check "
            f"with 'taskerino sessions show {session_id}'"
        )
