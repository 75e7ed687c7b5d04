"""The JSON API of §6 under /api. Handlers parse, call the front door (in a worker thread:
steering another process's recorder may take seconds), and answer with `views`. Errors are
raised as they come and turned into statuses by `errors` alone."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    MalformedRangeHeader,
    RangeNotSatisfiable,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from .. import __version__
from ..errors import CaptureError, InvalidInput, TaskerinoError
from ..models import to_dict
from ..rules import (
    MAX_QUERY,
    check_session_id,
    check_tags,
    check_text,
    parse_duration,
    parse_media_offset,
    parse_whole,
    record_config,
)
from ..sessions import StartRequest, Taskerino
from ..sessions.export import zip_stream
from .errors import BadRequest, error_response
from .events import live_events, session_events
from .openapi import openapi
from .views import find_sessions, hit_view, media_url, page_view, session_view, stats_view

T = TypeVar("T")

RECORD_OPTIONS = (
    "exclude",
    "screenshots",
    "screenshot_interval",
    "video",
    "sources",
    "compositor",
    "fps",
    "size",
    "audio",
    "system_audio",
    "mic",
    "balance",
)
START_FIELDS = ("name", "description", "tags", "duration", *RECORD_OPTIONS)
TEST_PATTERNS = ("blue", "green", "red", "yellow")
MEDIA_CACHE = "private, max-age=31536000, immutable"  # bytes of an id never change
MAX_BODY = 1 << 20


def library_of(request: Request) -> Taskerino:
    library: Taskerino = request.app.state.library
    return library


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(function, *args, **kwargs)


async def json_object(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object whose keys are all in `allowed`."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadRequest(f"the body is too large: at most {MAX_BODY} bytes")
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown field {unknown[0]!r}: allowed are {', '.join(allowed)}", field=unknown[0]
        )
    return data


def ok(data: object, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers={"cache-control": "no-store"})


# --- sessions ---------------------------------------------------------------------------
async def list_sessions(request: Request) -> Response:
    q = request.query_params
    page = await call(find_sessions, library_of(request), q)
    return ok(page_view(page))


async def get_session(request: Request) -> Response:
    sid = request.path_params["session_id"]
    return ok(await call(session_view, library_of(request), sid))


async def start_session(request: Request) -> Response:
    body = await json_object(request, START_FIELDS)
    options = {k: v for k, v in body.items() if k in RECORD_OPTIONS}
    for key, what in (("sources", "source ids"), ("exclude", "exclude patterns")):
        if key in options and not isinstance(options[key], list):
            raise InvalidInput(f"{key} must be a list of {what}")
    config = record_config(**options)
    seconds = None if body.get("duration") is None else parse_duration(body["duration"])
    tags = body.get("tags", [])
    if not isinstance(tags, list):
        raise InvalidInput("tags must be a list of texts")
    start = StartRequest(
        name=check_text(body.get("name", ""), "name", 200),
        description=check_text(body.get("description", ""), "description", 10_000),
        config=config,
        tags=check_tags(tags),
    )
    library = library_of(request)
    session = await call(library.start, start)
    if seconds is not None:
        _end_after(request, session.id, seconds)
    return ok(await call(session_view, library, session.id), 201)


def _end_after(request: Request, session_id: str, seconds: float) -> None:
    """`duration`: end the session after that many seconds (unless it ended before)."""
    library = library_of(request)

    def end() -> None:
        with contextlib.suppress(TaskerinoError):  # ended or gone already
            library.end(session_id)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    request.app.state.timers.append(timer)
    timer.start()


def _steer(action: str) -> Callable[[Request], Any]:
    async def steer(request: Request) -> Response:
        library = library_of(request)
        sid = check_session_id(request.path_params["session_id"])
        await call(getattr(library, action), sid)
        return ok(await call(session_view, library, sid))

    steer.__name__ = f"{action}_session"
    return steer


async def update_session(request: Request) -> Response:
    body = await json_object(request, ("name", "description", "tags"))
    tags = body.get("tags")
    if tags is not None and not isinstance(tags, list):
        raise InvalidInput("tags must be a list of texts")
    library = library_of(request)
    sid = request.path_params["session_id"]
    await call(
        library.update_session,
        sid,
        name=body.get("name"),
        description=body.get("description"),
        tags=tags,
    )
    return ok(await call(session_view, library, sid))


async def add_note(request: Request) -> Response:
    body = await json_object(request, ("content", "type", "media_offset"))
    offset = body.get("media_offset")
    item = await call(
        library_of(request).add_note,
        check_session_id(request.path_params["session_id"]),
        body.get("content", ""),
        type=body.get("type", "note"),
        media_offset=None if offset is None else parse_media_offset(offset),
    )
    return ok(to_dict(item), 201)


async def update_screenshot(request: Request) -> Response:
    body = await json_object(request, ("comment", "flagged"))
    shot = await call(
        library_of(request).update_screenshot,
        request.path_params["screenshot_id"],
        comment=body.get("comment"),
        flagged=body.get("flagged"),
    )
    return ok(to_dict(shot))


async def session_stats(request: Request) -> Response:
    library = library_of(request)
    sid = check_session_id(request.path_params["session_id"])

    def read() -> dict[str, Any]:
        stats = library.stats(sid)
        state = library.session_state(sid)
        return stats_view(stats, library.disk_free(), state.elapsed(stats.updated_at))

    return ok(await call(read))


async def enrich_session(request: Request) -> Response:
    library = library_of(request)
    sid = check_session_id(request.path_params["session_id"])
    body = await json_object(request, ("stages",))
    stages = body.get("stages", [])
    if not isinstance(stages, list):
        raise InvalidInput("stages must be a list of stage names (ocr, transcribe, ...)")
    jobs = await call(library.enrich, sid, stages)
    return ok({"jobs": [to_dict(job) for job in jobs]}, status=202)


# --- sources, media, search, health -----------------------------------------------------
async def list_sources(request: Request) -> Response:
    library = library_of(request)
    try:
        found: dict[str, Any] = await call(library.sources)
    except CaptureError as exc:
        # No screen: test patterns (and audio) can still be recorded; say why.
        found = {"displays": [], "windows": [], "audio": [], "error": exc.message}
    for item in (*found["displays"], *found["windows"]):
        item["thumbnail_url"] = f"/api/sources/{item['id']}/thumbnail"
    found["tests"] = [
        {
            "id": f"test:{name}",
            "name": f"Test pattern ({name})",
            "thumbnail_url": f"/api/sources/test:{name}/thumbnail",
        }
        for name in TEST_PATTERNS
    ]
    return ok(found)


async def source_thumbnail(request: Request) -> Response:
    width = request.query_params.get("width", "320")
    picture = await call(
        library_of(request).source_thumbnail, request.path_params["source_id"], width
    )
    return Response(picture, media_type="image/jpeg", headers={"cache-control": "no-store"})


async def media(request: Request) -> Response:
    library = library_of(request)
    attachment, path = await call(library.media, request.path_params["attachment_id"])
    headers = {"cache-control": MEDIA_CACHE}
    if path is not None:
        if not path.is_file():
            raise TaskerinoError(
                f"the file of attachment {attachment.id} is missing (see 'taskerino doctor')"
            )
        refused = _check_range(request.headers.get("range"), attachment.size)
        if refused is not None:
            return refused
        return FileResponse(path, media_type=attachment.mime_type, headers=headers)
    # Bytes elsewhere (S3): proxied, one range asked of the blob store when one is asked
    # of us, so that the player seeks without the whole file passing through.
    refused = _check_range(request.headers.get("range"), attachment.size)
    if refused is not None:
        return refused
    span = _one_range(request.headers.get("range"), attachment.size)
    headers["accept-ranges"] = "bytes"
    if span is None:
        start, end, status = 0, attachment.size, 200
    else:
        (start, end), status = span, 206
        headers["content-range"] = f"bytes {start}-{end - 1}/{attachment.size}"
    headers["content-length"] = str(end - start)
    if request.method == "HEAD":
        return Response(None, status, headers=headers, media_type=attachment.mime_type)
    if span is None:
        stream = await call(library.open_media, attachment)
    else:
        stream = await call(library.open_media, attachment, start, end)

    def chunks() -> Any:
        with stream:
            while block := stream.read(1 << 16):
                yield block

    return StreamingResponse(
        chunks(), status_code=status, media_type=attachment.mime_type, headers=headers
    )


def _one_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range (start, end exclusive) a checked Range header asks for; None for
    no header or several ranges (then the whole file is sent, as HTTP allows)."""
    if header is None:
        return None
    ranges = FileResponse._parse_range_header(header, size)
    return ranges[0] if len(ranges) == 1 else None


async def export_zip(request: Request) -> Response:
    """The session's export as a zip, written piece by piece while it is sent."""
    library = library_of(request)
    sid = check_session_id(request.path_params["session_id"])
    formats = request.query_params.getlist("format")
    files = await call(library.export_files, sid, formats)
    top = f"taskerino-{sid}"
    headers = {
        "content-disposition": f'attachment; filename="{top}.zip"',
        "cache-control": "no-store",
    }
    # A sync iterator: Starlette runs each step in a worker thread.
    return StreamingResponse(zip_stream(files, top), media_type="application/zip", headers=headers)


def _check_range(header: str | None, size: int) -> Response | None:
    """A Range header that cannot be answered, answered as the API answers errors (JSON)
    rather than by the file response's plain text; None when it can be."""
    if header is None:
        return None
    try:
        # The file response's own parser, so that what passes here is what it serves.
        FileResponse._parse_range_header(header, size)
    except MalformedRangeHeader as exc:
        message = f"cannot read the Range header ({exc.content}): ask for bytes=START-END"
        raise BadRequest(message) from None
    except RangeNotSatisfiable:
        refused = error_response(416, f"the range asked for is outside the {size} bytes")
        refused.headers["content-range"] = f"bytes */{size}"
        return refused
    return None


async def search(request: Request) -> Response:
    query = check_text(request.query_params.get("q", ""), "query", MAX_QUERY).strip()
    if not query:
        raise InvalidInput("search needs some text: ?q=WORDS")
    limit = parse_whole(request.query_params.get("limit", "50"), "limit", 1, 500)
    offset = parse_whole(request.query_params.get("offset", "0"), "offset", 0, 100_000)
    session = request.query_params.get("session")
    hits = await call(
        library_of(request).search, query, session_id=session, limit=limit, offset=offset
    )
    return ok({"query": query, "indexed": True, "hits": [hit_view(h) for h in hits]})


async def health(request: Request) -> Response:
    library = library_of(request)
    live = await call(library.find_sessions, status="active,paused", limit=1)
    return ok(
        {
            "ok": True,
            "version": __version__,
            "live_sessions": live.total,
            "disk_free": await call(library.disk_free),
            "worker": request.app.state.worker is not None,
            "search_index": True,
        }
    )


async def openapi_json(request: Request) -> Response:
    return ok(openapi(__version__))


ROUTES = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/api/health", health, methods=["GET"]),
    Route("/api/events", live_events, methods=["GET"]),
    Route("/api/sessions", list_sessions, methods=["GET"]),
    Route("/api/sessions", start_session, methods=["POST"]),
    Route("/api/sessions/{session_id}", get_session, methods=["GET"]),
    Route("/api/sessions/{session_id}", update_session, methods=["PATCH"]),
    Route("/api/sessions/{session_id}/pause", _steer("pause"), methods=["POST"]),
    Route("/api/sessions/{session_id}/resume", _steer("resume"), methods=["POST"]),
    Route("/api/sessions/{session_id}/end", _steer("end"), methods=["POST"]),
    Route("/api/sessions/{session_id}/notes", add_note, methods=["POST"]),
    Route("/api/sessions/{session_id}/stats", session_stats, methods=["GET"]),
    Route("/api/sessions/{session_id}/events", session_events, methods=["GET"]),
    Route("/api/sessions/{session_id}/enrich", enrich_session, methods=["POST"]),
    Route("/api/sessions/{session_id}/export.zip", export_zip, methods=["GET"]),
    Route("/api/screenshots/{screenshot_id}", update_screenshot, methods=["PATCH"]),
    Route("/api/sources", list_sources, methods=["GET"]),
    Route("/api/sources/{source_id}/thumbnail", source_thumbnail, methods=["GET"]),
    Route("/api/media/{attachment_id}", media, methods=["GET", "HEAD"]),
    Route("/api/search", search, methods=["GET"]),
]

__all__ = ["ROUTES", "media_url"]
