"""The web app: `create_app` wires the front door, the routes, the guard and the one error
boundary into an ASGI application."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..models import parse_time
from ..sessions import Taskerino
from ..sessions.budget import RECYCLED_NAMES
from . import api, pages
from .errors import EXCEPTION_HANDLERS, Boundary
from .security import Guard, Secrets

HERE = Path(__file__).parent


def create_app(library: Taskerino, *, token: str, port: int, hosts: frozenset[str]) -> Starlette:
    """The app for one library. `token` is the login token, `hosts` the Host header values
    it answers to (see `security.allowed_hosts`), `port` the one it is reached on."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(
        clock=clock,
        when=when,
        size=size,
        marked=marked,
        hit_kind=HIT_KINDS.get,
        recycled=RECYCLED_NAMES.get,
    )
    app = Starlette(
        routes=[
            *pages.ROUTES,
            *api.ROUTES,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(Boundary, home=library.home),
            Middleware(Guard, secrets=Secrets(token, port), hosts=hosts),
        ],
    )
    app.state.library = library
    app.state.secrets = Secrets(token, port)
    app.state.templates = templates
    app.state.stopping = asyncio.Event()  # set when the server stops: streams end
    app.state.timers = []  # sessions started with a duration end by these
    app.state.worker = None  # the in-process enrichment worker, when serve runs one
    return app


# How the pages name the kinds of search hits (the API's `kind`s).
HIT_KINDS = {
    "ocr": "ocr",
    "transcript": "said",
    "activity": "app",
    "note": "note",
    "comment": "comment",
    "session": "name",
}
_MATCH = re.compile(r"\[([^\[\]]*)\]")


def marked(snippet: str) -> Markup:
    """A search snippet, escaped, with each match (`[word]`) in <mark>."""
    text = str(escape(snippet))
    return Markup(_MATCH.sub(lambda m: f"<mark>{m[1]}</mark>", text))


def clock(seconds: float | None) -> str:
    """Seconds on the timeline as the player shows them: 4:05, 1:02:11."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def when(iso: str | None) -> str:
    """An ISO UTC time as `2026-11-25 09:14` (UTC; the page's script shows local time)."""
    if not iso:
        return "–"
    return parse_time(iso).strftime("%Y-%m-%d %H:%M")


def size(count: float | None) -> str:
    if count is None:
        return "–"
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
