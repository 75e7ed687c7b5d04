"""A bounded load on a running `taskerino serve`, on loopback only.

`clients` concurrent clients, each like an open session page: one event stream on the
session being recorded, and requests in turn, as fast as answers come (with `think`
seconds between them), to the session list, a session, and a random 64 kB range of a
video. After `seconds` every client stops. Every answer is checked (status, and what it
holds); whatever is not right is a failure, described. The suite's short run
(tests/test_web_load.py) and the full benchmark (bench/bench_web_load.py) use it.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx2

RANGE = 64 * 1024


@dataclass(frozen=True)
class Targets:
    """What the clients ask for: `live` is the session being recorded, `session` and
    `video` (an attachment id, its size in bytes) a recorded one."""

    live: str
    session: str
    video: str
    video_size: int


@dataclass
class Load:
    seconds: float
    clients: int
    requests: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    events: int = 0  # Server-Sent Events received, all streams together
    streams: int = 0  # event streams that answered 200

    def record(self, endpoint: str, started: float) -> None:
        self.requests[endpoint] += 1
        self.latencies.setdefault(endpoint, []).append((time.monotonic() - started) * 1000)

    def summary(self) -> dict[str, Any]:
        """Counts, rates and latencies (ms) per endpoint, for a report."""
        per: dict[str, Any] = {}
        for endpoint, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            per[endpoint] = {
                "requests": self.requests[endpoint],
                "per_second": round(self.requests[endpoint] / self.seconds, 1),
                "p50_ms": round(statistics.median(ordered), 1),
                "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
                "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
                "max_ms": round(ordered[-1], 1),
            }
        total = sum(self.requests.values())
        return {
            "seconds": self.seconds,
            "clients": self.clients,
            "requests": total,
            "requests_per_second": round(total / self.seconds, 1),
            "failures": len(self.failures),
            "first_failures": self.failures[:10],
            "event_streams": self.streams,
            "events": self.events,
            "endpoints": per,
        }


def run_load(
    base: str,
    token: str,
    targets: Targets,
    *,
    seconds: float,
    clients: int = 50,
    think: float = 0.0,
) -> Load:
    """Run the load for `seconds` and return what happened."""
    if not base.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise ValueError(f"load is only ever sent to loopback, not {base}")
    load = Load(seconds, clients)
    asyncio.run(_run(base, token, targets, load, think))
    return load


async def _run(base: str, token: str, targets: Targets, load: Load, think: float) -> None:
    deadline = time.monotonic() + load.seconds
    await asyncio.gather(
        *(_client(n, base, token, targets, load, deadline, think) for n in range(load.clients))
    )


async def _client(
    number: int,
    base: str,
    token: str,
    targets: Targets,
    load: Load,
    deadline: float,
    think: float,
) -> None:
    rng = random.Random(number)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        stream = asyncio.create_task(_follow(http, targets.live, load, deadline))
        steps = [_list, _session, _media]
        turn = number % len(steps)  # clients start at different steps
        while time.monotonic() < deadline:
            step = steps[turn % len(steps)]
            turn += 1
            started = time.monotonic()
            try:
                problem = await step(http, targets, rng)
            except httpx2.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            name = step.__name__.lstrip("_")
            load.record(name, started)
            if problem is not None:
                load.failures.append(f"{name}: {problem}")
            if think:
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        await stream


async def _list(http: httpx2.AsyncClient, targets: Targets, rng: random.Random) -> str | None:
    response = await http.get("/api/sessions", params={"limit": "50"})
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:200]}"
    if response.json()["total"] < 2:
        return "the list lacks sessions"
    return None


async def _session(http: httpx2.AsyncClient, targets: Targets, rng: random.Random) -> str | None:
    sid = targets.session if rng.random() < 0.5 else targets.live
    response = await http.get(f"/api/sessions/{sid}")
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:200]}"
    if response.json()["id"] != sid:
        return "another session answered"
    return None


async def _media(http: httpx2.AsyncClient, targets: Targets, rng: random.Random) -> str | None:
    start = rng.randrange(0, max(1, targets.video_size - RANGE))
    end = min(targets.video_size, start + RANGE) - 1
    response = await http.get(
        f"/api/media/{targets.video}", headers={"Range": f"bytes={start}-{end}"}
    )
    if response.status_code != 206:
        return f"{response.status_code} {response.text[:200]}"
    if len(response.content) != end - start + 1:
        return f"{len(response.content)} bytes for a range of {end - start + 1}"
    return None


async def _follow(http: httpx2.AsyncClient, sid: str, load: Load, deadline: float) -> None:
    """An open page's event stream, kept until the deadline."""
    started = time.monotonic()

    async def read() -> None:
        async with http.stream("GET", f"/api/sessions/{sid}/events") as response:
            load.record("events", started)
            if response.status_code != 200:
                load.failures.append(f"events: {response.status_code}")
                return
            load.streams += 1
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    load.events += 1

    try:
        await asyncio.wait_for(read(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        pass  # the deadline: the page is closed
    except httpx2.HTTPError as exc:
        load.failures.append(f"events: {type(exc).__name__}: {exc}")
