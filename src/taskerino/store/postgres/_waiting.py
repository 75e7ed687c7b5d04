"""Waiting for changes in PostgreSQL (the `Waiting` part): LISTEN/NOTIFY.

Triggers NOTIFY inside the writing transaction (see `_schema`), one channel per kind of
topic with the session's id as payload, so a notification is delivered when the change
commits. One thread per store object — started by the first watch — holds a connection
of its own (autocommit, outside the pool: a LISTEN belongs to its connection), LISTENs to
the channels of the kinds its open watches wait for, and wakes the watches a notification
concerns. It blocks on the socket between notifications; a NOTIFY on a channel of its own
wakes it when a watch needs a new channel or the store closes. A channel is listened to
from the first watch that needs it on; `watch()` waits
(at most `READY_SECONDS`) until its channels are, so that every change committed after it
returns is announced. A watch that could not wait that long (the database away) is woken
once when its channels are listened to.

When the connection breaks (the server restarted, the network cut) the thread reconnects
with a growing pause (0.5 s up to 5 s) and LISTENs again, then wakes every watch once:
changes may have committed unannounced meanwhile. Until then waits run to their timeouts.
Nothing here ever raises into a caller.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ...errors import StorageError
from ..base import Waiting
from ..watch import TOPIC_KINDS, Topic, TopicKind, Watch, Watchers
from ._connection import CONNECT_SECONDS, PostgresBase

log = logging.getLogger("taskerino.store")

CHANNELS: dict[TopicKind, str] = {kind: f"taskerino_{kind}" for kind in TOPIC_KINDS}
_KINDS = {channel: kind for kind, channel in CHANNELS.items()}
# How long the thread waits for notifications before it looks whether the store closed
# and for new channels to listen to (both also wake it at once, through its own channel);
# how long `watch()` waits for its channels.
ROUND_SECONDS = 5.0
READY_SECONDS = 2.0
RECONNECT_SECONDS = (0.5, 5.0)  # first pause, longest pause
# TCP keepalives, so that a connection whose peer vanished without a word (a machine or
# a network gone) is noticed in about half a minute rather than hours.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class PostgresWaiting(PostgresBase, Waiting):
    def __init__(self, url: str) -> None:
        self._watchers = Watchers()
        self._listener: threading.Thread | None = None
        self._quit = threading.Event()
        # The channels the listening connection LISTENs to now, and those it ever did;
        # watches made while theirs were not listened to yet. All under `_ready`.
        self._ready = threading.Condition(threading.Lock())
        self._listened: set[str] = set()
        self._ever: set[str] = set()
        self._unconfirmed: set[Watch] = set()
        # A channel of this store object's own: a NOTIFY there wakes its thread at once
        # (for a channel to LISTEN to, or to quit) instead of at the end of its round.
        self._wake_channel = f"taskerino_wake_{uuid.uuid4().hex[:20]}"
        self._connected = False
        super().__init__(url)

    @property
    def listening(self) -> bool:
        """Whether the listening connection is up and LISTENs (to at least one channel)."""
        with self._ready:
            return bool(self._listened)

    def watch(self, topics: Sequence[Topic]) -> Watch:
        if self._closed:
            raise StorageError(f"the store {self.shown} is closed")
        watch = self._watchers.add(topics)
        channels = {CHANNELS[kind] for kind in watch.kinds}
        with self._ready:
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name="store-listen", daemon=True
                )
                self._listener.start()
            wake = self._connected and not channels <= self._listened
        if wake:
            self._wake()
        with self._ready:
            if not self._ready.wait_for(lambda: channels <= self._listened, READY_SECONDS):
                self._unconfirmed = {w for w in self._unconfirmed if not w.closed}
                self._unconfirmed.add(watch)
        return watch

    def _wake(self) -> None:
        """Wake the listening thread now (a NOTIFY on its own channel, outside any
        transaction of the caller's); if the database cannot be reached, it wakes at the
        end of its round."""
        try:
            conn = self._pool.getconn()
        except Exception:  # the pool closed or the server away: nothing to wake then
            return
        try:
            conn.execute("SELECT pg_notify(%s, '')", (self._wake_channel,))
        except psycopg.Error as exc:
            log.debug("cannot wake the listening connection on %s: %s", self.shown, exc)
        finally:
            self._pool.putconn(conn)

    # --- the listening thread ---------------------------------------------------------
    def _listen(self) -> None:
        pause = RECONNECT_SECONDS[0]
        while not self._quit.is_set():
            try:
                conn = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_SECONDS, **KEEPALIVES
                )
            except psycopg.Error as exc:
                log.debug("cannot listen on %s (again in %.1f s): %s", self.shown, pause, exc)
                self._quit.wait(pause)
                pause = min(RECONNECT_SECONDS[1], pause * 2)
                continue
            pause = RECONNECT_SECONDS[0]
            try:
                self._serve(conn)
            except psycopg.Error as exc:
                log.debug("listening on %s stopped: %s", self.shown, exc)
            finally:
                with self._ready:
                    self._listened.clear()
                    self._connected = False
                with contextlib.suppress(psycopg.Error):
                    conn.close()

    def _serve(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._wake_channel)))
        with self._ready:
            self._connected = True
        while not self._quit.is_set():
            with self._ready:
                new = {CHANNELS[kind] for kind in self._watchers.kinds()} - self._listened
            for channel in sorted(new):
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            if new:
                self._now_listened(new)
            for note in conn.notifies(timeout=ROUND_SECONDS):
                if note.channel == self._wake_channel:
                    break
                kind = _KINDS.get(note.channel)
                if kind is not None:
                    self._watchers.changed(kind, note.payload)

    def _now_listened(self, channels: set[str]) -> None:
        """The connection LISTENs to `channels` from now on: what committed before was
        not announced to it, so wake the watches that may have missed something."""
        kinds = {_KINDS[channel] for channel in channels}
        with self._ready:
            again = {_KINDS[channel] for channel in channels & self._ever}
            self._listened |= channels
            self._ever |= channels
            self._unconfirmed = {w for w in self._unconfirmed if not w.closed}
            waiting = [w for w in self._unconfirmed if w.kinds <= self._listened_kinds()]
            self._unconfirmed.difference_update(waiting)
            self._ready.notify_all()
        for watch in waiting:
            if watch.kinds & kinds:
                watch.fire()
        if again:
            self._watchers.fire(again)  # listened before: the connection was lost

    def _listened_kinds(self) -> set[TopicKind]:
        return {_KINDS[channel] for channel in self._listened}

    def close(self) -> None:
        self._quit.set()
        if self._connected:
            self._wake()
        self._watchers.close()
        with self._ready:
            listener, self._listener = self._listener, None
        if listener is not None and listener is not threading.current_thread():
            # Woken above, it ends at once; asleep in a round or a connection attempt to a
            # vanished server it may take longer: a daemon thread, it ends on its own.
            listener.join(1.0)
        super().close()
