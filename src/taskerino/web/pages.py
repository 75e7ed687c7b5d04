"""The pages: server-rendered from the same JSON the API answers with, each with a small
script of its own (no inline script: the Content-Security-Policy forbids it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import InvalidInput
from ..rules import SESSION_SORTS, STATUSES
from ..sessions import Taskerino
from .api import call, library_of
from .views import find_sessions, hit_view, page_view, session_view

FILTERS = ("status", "q", "from", "to", "tag", "sort")
HITS_SHOWN = 50


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    context["csrf"] = request.app.state.secrets.csrf
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status, headers={"cache-control": "no-store"}
    )
    return response


async def sessions_page(request: Request) -> Response:
    q = request.query_params
    page = await call(find_sessions, library_of(request), q)
    filters = {k: q.get(k, "") for k in FILTERS}
    kept = {k: v for k, v in filters.items() if v}
    if "limit" in q:
        kept["limit"] = str(page.limit)

    def at(offset: int) -> str:
        return "/?" + urlencode({**kept, "offset": str(offset)})

    previous = at(max(0, page.offset - page.limit)) if page.offset > 0 else None
    following = at(page.offset + page.limit) if page.offset + page.limit < page.total else None
    found = await call(_found, library_of(request), filters["q"]) if filters["q"].strip() else None
    return render(
        request,
        "sessions.html",
        {
            "page": page_view(page),
            "filters": filters,
            "statuses": STATUSES,
            "sorts": SESSION_SORTS,
            "previous": previous,
            "next": following,
            "first": page.offset + 1 if page.sessions else 0,
            "last": page.offset + len(page.sessions),
            "found": found,
        },
    )


def _found(library: Taskerino, query: str) -> dict[str, Any]:
    """The search box's text in the full-text index (what `/api/search` answers): hits
    with their session, moment, kind and snippet; a query the index cannot read is said
    on the page rather than failing it."""
    try:
        hits = library.search(query, limit=HITS_SHOWN)
    except InvalidInput as exc:
        return {"hits": [], "error": exc.message, "more": False}
    return {"hits": [hit_view(h) for h in hits], "error": None, "more": len(hits) == HITS_SHOWN}


async def session_page(request: Request) -> Response:
    session = await call(session_view, library_of(request), request.path_params["session_id"])
    return render(request, "session.html", {"s": session})


async def record_page(request: Request) -> Response:
    return render(request, "record.html", {"selected": request.query_params.get("session", "")})


async def sessions_redirect(request: Request) -> Response:
    query = request.url.query
    return RedirectResponse("/" + ("?" + query if query else ""), status_code=307)


ROUTES = [
    Route("/", sessions_page, methods=["GET"]),
    Route("/sessions", sessions_redirect, methods=["GET"]),
    Route("/sessions/{session_id}", session_page, methods=["GET"]),
    Route("/record", record_page, methods=["GET"]),
]
