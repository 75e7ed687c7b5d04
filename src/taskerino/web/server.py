"""`taskerino serve`: the web app under uvicorn on a socket of its own.

The socket is bound here, so that a taken default port can be reported and replaced by a
free one before anything is printed; SIGINT and SIGTERM stop the server gracefully (open
event streams end at once), and the caller then closes the library, which ends any
session this process records.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
from collections.abc import Callable

import anyio.to_thread
import uvicorn

from ..errors import InvalidInput, TaskerinoError
from ..rules import check_text
from ..sessions import Taskerino
from .app import create_app
from .security import WILDCARDS, allowed_hosts, load_token

THREADS = 8  # for the app's blocking calls (front door, files); see `_Server.serve`


class _Server(uvicorn.Server):
    """uvicorn's server that also tells the app's event streams to end when it stops, and
    runs the app's blocking calls on a few threads only."""

    def __init__(
        self, config: uvicorn.Config, on_stop: Callable[[], None], on_start: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._on_stop = on_stop
        self._on_start = on_start

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Said only now: uvicorn's signal handlers are in place, so a SIGTERM sent as soon
        # as the URL shows stops the server (before them, it was lost and serve hung).
        self._on_start()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        # A recording in this process needs the interpreter's lock on time: its capture
        # thread grabs a frame every tick. With anyio's default of 40 threads, 50 clients
        # that never pause kept dozens of threads waiting for the lock and the capture
        # thread ticks behind (1-4 % of frames dropped in 15 s runs); with 8, 0-1 %.
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        await super().serve(sockets)

    async def on_tick(self, counter: int) -> bool:
        if self.should_exit:
            self._on_stop()
        return await super().on_tick(counter)


def listen(host: str, port: int, warn: Callable[[str], None]) -> socket.socket:
    """A listening socket on `host`:`port`; when the port is taken, on a free one."""
    host = check_text(host, "host", 255, allow_empty=False)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(f"cannot listen on host {host!r}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise TaskerinoError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
            warn(f"port {port} is taken; using a free one")
            sock.bind((address[0], 0, *address[2:]))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(
    library: Taskerino,
    *,
    host: str,
    port: int,
    announce: Callable[[str], None],
    warn: Callable[[str], None],
    worker: bool = True,
) -> None:
    """Serve until SIGINT or SIGTERM; `announce` gets the one line with the login URL.
    With `worker`, one enrichment worker runs in the process while it serves."""
    sock = listen(host, port, warn)
    try:
        bound = int(sock.getsockname()[1])
        token = load_token(library.home)
        app = create_app(library, token=token, port=bound, hosts=allowed_hosts(host, bound))
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        shown = socket.gethostname() if host in WILDCARDS else host
        shown = f"[{shown}]" if ":" in shown else shown
        url = f"http://{shown}:{bound}/?token={token}"
        server = _Server(config, app.state.stopping.set, lambda: announce(url))
        enrichment = library.worker(1) if worker else None
        runner = (
            threading.Thread(target=enrichment.run, name="enrichment", daemon=True)
            if (enrichment is not None)
            else None
        )
        app.state.worker = enrichment
        # uvicorn catches the signal, stops, then raises it again into the handlers it
        # found: these, which have nothing left to do, so that the caller ends cleanly.
        previous = {s: signal.signal(s, _stopped) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if runner is not None:
                runner.start()
            server.run(sockets=[sock])
        finally:
            if enrichment is not None and runner is not None:
                enrichment.stop.set()  # jobs in hand go back to the queue
                runner.join(10)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for timer in app.state.timers:
                timer.cancel()
    finally:
        sock.close()


def _stopped(signum: int, frame: object) -> None:
    """The server has stopped already on this signal."""
