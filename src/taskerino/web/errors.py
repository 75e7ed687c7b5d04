"""The web app's one error boundary: domain errors become HTTP statuses here and nowhere
else, and what nobody expected is logged to `errors.log` in the data folder and answered
with a JSON error that holds no traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errorlog import log_unexpected
from ..errors import InvalidInput, NotFound, TaskerinoError

log = logging.getLogger("taskerino.web")


class BadRequest(Exception):
    """The request itself is malformed (not JSON, not an object): 400."""


def status_for(error: TaskerinoError) -> int:
    """Bad input is 422; something that does not exist 404; every other expected error
    (a recorder that failed, a session that cannot be paused now, a full disk) is a
    conflict with the state of things: 409."""
    if isinstance(error, InvalidInput):
        return 422
    if isinstance(error, NotFound):
        return 404
    return 409


def error_response(status: int, message: str, details: dict[str, object] | None = None) -> Response:
    body: dict[str, object] = {"error": message}
    if details:
        body["details"] = json.loads(json.dumps(details, default=str))
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


def answer(
    request: Request, status: int, message: str, details: dict[str, object] | None = None
) -> Response:
    """JSON for the API; for a page, the same message on a page."""
    path = request.url.path
    if path.startswith("/api/") or path == "/openapi.json":
        return error_response(status, message, details)
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "csrf": ""},
        status_code=status,
        headers={"cache-control": "no-store"},
    )
    return response


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskerinoError)
    return answer(request, status_for(exc), exc.message, exc.details)


async def on_bad_request(request: Request, exc: Exception) -> Response:
    return answer(request, 400, str(exc))


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return answer(request, exc.status_code, exc.detail)


EXCEPTION_HANDLERS = {
    TaskerinoError: on_domain_error,
    BadRequest: on_bad_request,
    HTTPException: on_http_error,
}


class Boundary:
    """Catches what escaped every handler: logs it, answers 500 with a one-line JSON error
    (when the response has not started yet), and never lets a traceback reach a client."""

    def __init__(self, app: ASGIApp, home: Path) -> None:
        self.app = app
        self.home = home

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            where = log_unexpected(exc, self.home, f"web {scope['method']} {scope['path']}")
            log.error("unexpected %s (the details are in %s)", type(exc).__name__, where)
            if not started:
                response = error_response(
                    500,
                    f"unexpected {type(exc).__name__}: the details are in {where.name} in "
                    "the data folder; please report them",
                )
                await response(scope, receive, send)
