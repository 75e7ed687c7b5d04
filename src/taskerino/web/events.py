"""Server-Sent Events: what a recording does, pushed to the page.

`GET /api/sessions/{id}/events` sends `state` when the session's status or enrichment
(each stage's status) changes, `stats` every second while it records (from this process's
registry, or the last figures the recorder of another process wrote to the store), and
`end` once it has ended. The stream closes after `end`, unless enrichment is still to
come: while a stage is pending or running it goes on with `state` (and a keep-alive
comment when nothing changes), and closes once every stage is done or failed, so a page
follows the enrichment of a session from its recording to its last stage. `GET
/api/events` sends `live`, the sessions that record now, whenever that list changes: a
session started in another terminal shows up.

A stream does not poll: it waits on a watch of the store (`Taskerino.watch_session`,
`watch_live`) and looks when woken — at most every `MIN_GAP` seconds, and at least every
second while the session records (stats) or every `FALLBACK` seconds otherwise, so a lost
wake only delays. The wait holds a thread of its own (`WAIT_THREADS` at most), not one
of the request threads.

Streams end when the server shuts down, so that it never waits for an open page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import TaskerinoError
from ..models import to_dict, utc_now
from ..rules import check_session_id
from ..sessions import Taskerino, Watch
from .views import stats_view

STATS_EVERY = 1.0  # stats are sent at least this often while a session records
MIN_GAP = 0.25  # seconds between looks at the store, however often it wakes the stream
FALLBACK = 5.0  # a stream looks at least this often when nothing wakes it
WAIT_THREADS = 64
KEEPALIVE = 15.0  # a comment line keeps proxies and the browser from timing out
TERMINAL = ("completed", "interrupted")
UNSETTLED = ("pending", "running")  # stage statuses that will still change


def message(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _stream(body: AsyncIterator[str]) -> Response:
    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


async def session_events(request: Request) -> Response:
    library: Taskerino = request.app.state.library
    stopping: asyncio.Event = request.app.state.stopping
    sid = check_session_id(request.path_params["session_id"])
    await run_in_threadpool(library.session_state, sid)  # 404 before the stream starts

    def look() -> tuple[dict[str, Any], dict[str, Any] | None]:
        state = library.session_state(sid)
        stats = library.latest_stats(sid)
        now = utc_now()
        shown = {
            "session_id": sid,
            "status": state.status,
            "elapsed": state.elapsed(now),
            "enrichment": {stage: to_dict(st) for stage, st in state.enrichment.items()},
        }
        figures = None
        if stats is not None:
            figures = stats_view(stats, library.disk_free(), state.elapsed(stats.updated_at))
        return shown, figures

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        watch = await _watch(lambda: library.watch_session(sid))
        try:
            last_state: tuple[object, ...] | None = None
            last_stats = 0.0
            ended = False
            quiet_since = time.monotonic()
            while not stopping.is_set():
                looked = time.monotonic()
                shown, figures = await run_in_threadpool(look)
                key = (shown["status"], json.dumps(shown["enrichment"], sort_keys=True))
                now = time.monotonic()
                if key != last_state:
                    last_state = key
                    quiet_since = now
                    yield message("state", shown)
                if not ended:
                    ended = shown["status"] in TERMINAL
                    if figures is not None and (ended or now - last_stats >= STATS_EVERY):
                        last_stats = now
                        yield message("stats", figures)
                    if ended:
                        yield message("end", shown)
                if ended:
                    stages = shown["enrichment"].values()
                    if not any(stage["status"] in UNSETTLED for stage in stages):
                        return
                    if now - quiet_since >= KEEPALIVE:
                        quiet_since = now
                        yield ": keep-alive\n\n"
                    await _wait(request, watch, stopping, looked, FALLBACK)
                else:
                    due = last_stats + STATS_EVERY - now if last_stats else STATS_EVERY
                    await _wait(request, watch, stopping, looked, due)
        finally:
            if watch is not None:
                watch.close()

    return _stream(body())


async def live_events(request: Request) -> Response:
    library: Taskerino = request.app.state.library
    stopping: asyncio.Event = request.app.state.stopping

    def look() -> list[dict[str, Any]]:
        page = library.find_sessions(status="active,paused", sort="newest", limit=50)
        return [
            {"id": s.id, "name": s.name, "status": s.status, "start_time": s.start_time}
            for s in page.sessions
        ]

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        watch = await _watch(library.watch_live)
        try:
            last: list[dict[str, Any]] | None = None
            quiet_since = time.monotonic()
            while not stopping.is_set():
                looked = time.monotonic()
                live = await run_in_threadpool(look)
                if live != last:
                    last = live
                    quiet_since = time.monotonic()
                    yield message("live", live)
                elif time.monotonic() - quiet_since >= KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                await _wait(request, watch, stopping, looked, FALLBACK)
        finally:
            if watch is not None:
                watch.close()

    return _stream(body())


async def _watch(make: Callable[[], Watch]) -> Watch | None:
    """A watch for a stream; None (the stream then looks every `FALLBACK` seconds) when the
    store cannot give one."""
    try:
        return await run_in_threadpool(make)
    except TaskerinoError:
        return None


async def _wait(
    request: Request, watch: Watch | None, stopping: asyncio.Event, looked: float, most: float
) -> None:
    """Until the watch wakes, `most` seconds pass or the server stops; never sooner than
    `MIN_GAP` after the last look (at `looked`)."""
    gap = looked + MIN_GAP - time.monotonic()
    if gap > 0:
        await _sleep(stopping, gap)
    most = max(0.0, min(most, FALLBACK))
    if watch is None or stopping.is_set():
        await _sleep(stopping, most)
        return
    limiter = getattr(request.app.state, "waiters", None)
    if limiter is None:
        limiter = request.app.state.waiters = anyio.CapacityLimiter(WAIT_THREADS)

    async def close_on_stop() -> None:
        await stopping.wait()
        watch.close()  # ends the wait in its thread at once

    async with anyio.create_task_group() as group:
        group.start_soon(close_on_stop)
        # Abandoned when the stream is cancelled (the page went away): the stream's
        # `finally` closes the watch, which ends the wait.
        await anyio.to_thread.run_sync(watch.wait, most, limiter=limiter, abandon_on_cancel=True)
        group.cancel_scope.cancel()


async def _sleep(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
