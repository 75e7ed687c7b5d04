"""The OpenAPI description of the JSON API, written out by hand: the API is small, and the
limits it states come from the rule book, so that the description and the checks agree."""

from __future__ import annotations

from typing import Any

from ..rules import (
    BALANCE_RANGE,
    COMPOSITORS,
    CONTEXT_ITEM_TYPES,
    EXPORT_FORMATS,
    FPS_RANGE,
    MAX_DESCRIPTION,
    MAX_EXCLUSION,
    MAX_EXCLUSIONS,
    MAX_NAME,
    MAX_NOTE,
    MAX_PAGE_SIZE,
    MAX_QUERY,
    MAX_SOURCES,
    MAX_TAG,
    MAX_TAGS,
    SCREENSHOT_INTERVAL_RANGE,
    SESSION_SORTS,
    STATUSES,
    THUMBNAIL_WIDTH_RANGE,
)

Schema = dict[str, Any]

ID: Schema = {"type": "string", "pattern": "^[0-9A-Za-z_-]{1,64}$"}
TEXT: Schema = {"type": "string"}
NUMBER: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
OBJECT: Schema = {"type": "object", "additionalProperties": True}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Schema]:
    what = {
        400: "malformed request (not JSON, not an object)",
        401: "no valid token",
        403: "foreign Host, cross-origin request or missing CSRF token",
        404: "no such session, screenshot, attachment or recording",
        409: "not possible now (a recorder failed, the session is not live, ...)",
        416: "the range asked for is outside the file",
        422: "invalid input: the message says what is allowed",
    }
    return {str(s): json_body(ref("Error"), what[s]) for s in (401, 403, *statuses)}


def param(name: str, where: str, schema: Schema, description: str = "") -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


SESSION_ID = param("session_id", "path", ID)


def operation(
    summary: str,
    ok: Schema,
    *,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    statuses: tuple[int, ...] = (),
    code: str = "200",
) -> Schema:
    op: Schema = {"summary": summary, "responses": {code: ok, **errors(*statuses)}}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return op


def openapi(version: str) -> Schema:
    low_i, high_i = SCREENSHOT_INTERVAL_RANGE
    record_options: Schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": MAX_NAME},
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
            "tags": {
                "type": "array",
                "maxItems": MAX_TAGS,
                "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG},
            },
            "duration": {"type": "number", "minimum": 0, "description": "end after seconds"},
            "screenshots": BOOL,
            "screenshot_interval": {"type": "number", "minimum": low_i, "maximum": high_i},
            "video": BOOL,
            "sources": {
                "type": "array",
                "maxItems": MAX_SOURCES,
                "items": {"type": "string"},
                "description": "display:N, window:ID or test:NAME; a fifth is refused (422)",
            },
            "compositor": {"type": "string", "enum": list(COMPOSITORS)},
            "fps": {"type": "integer", "minimum": FPS_RANGE[0], "maximum": FPS_RANGE[1]},
            "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$", "example": "1920x1080"},
            "audio": BOOL,
            "system_audio": BOOL,
            "mic": {"type": "string"},
            "balance": {
                "type": "integer",
                "minimum": BALANCE_RANGE[0],
                "maximum": BALANCE_RANGE[1],
            },
            "exclude": {
                "type": "array",
                "maxItems": MAX_EXCLUSIONS,
                "items": {"type": "string", "minLength": 1, "maxLength": MAX_EXCLUSION},
                "description": "windows to black out: a glob matching a whole title or "
                "application name, or re:REGEX matching anywhere (case-insensitive); the "
                "exclude setting's patterns apply too",
            },
        },
    }
    list_params = [
        param("status", "query", TEXT, f"one or several of {', '.join(STATUSES)}, by commas"),
        param("q", "query", {"type": "string", "maxLength": MAX_QUERY}, "text in name etc."),
        param("from", "query", TEXT, "started on or after (date or ISO time)"),
        param("to", "query", TEXT, "started before the end of (date) or before (time)"),
        param("tag", "query", TEXT, "carries this tag"),
        param("sort", "query", {"type": "string", "enum": list(SESSION_SORTS)}),
        param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}),
        param("offset", "query", {"type": "integer", "minimum": 0}),
    ]
    session_ok = json_body(ref("Session"), "the session")
    sse = {"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": TEXT}}}
    steer = {
        action: {
            "post": operation(
                f"{action.capitalize()} a session (also one recorded by another process)",
                session_ok,
                parameters=[SESSION_ID],
                statuses=(404, 409, 422),
            )
        }
        for action in ("pause", "resume", "end")
    }
    media_operation = operation(
        "An attachment's bytes (HTTP Range answered with 206)",
        {"description": "the bytes", "content": {"*/*": {}}},
        parameters=[
            param("attachment_id", "path", ID),
            param("Range", "header", TEXT, "bytes=START-END, bytes=START- or bytes=-LAST"),
        ],
        statuses=(400, 404, 409, 416, 422),
    )
    media_operation["responses"]["206"] = {
        "description": "the part asked for by Range",
        "content": {"*/*": {}},
    }
    paths: Schema = {
        "/api/health": {"get": operation("Is the server well", json_body(OBJECT, "health"))},
        "/api/events": {"get": operation("Live sessions (SSE event `live`)", sse)},
        "/api/sessions": {
            "get": operation(
                "Sessions, filtered and paged",
                json_body(ref("SessionPage"), "one page"),
                parameters=list_params,
                statuses=(422,),
            ),
            "post": operation(
                "Start recording a session",
                session_ok,
                body=record_options,
                statuses=(400, 409, 422),
                code="201",
            ),
        },
        "/api/sessions/{session_id}": {
            "get": operation("A session", session_ok, parameters=[SESSION_ID], statuses=(404, 422)),
            "patch": operation(
                "Edit name, description and tags",
                session_ok,
                parameters=[SESSION_ID],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "name": record_options["properties"]["name"],
                        "description": record_options["properties"]["description"],
                        "tags": record_options["properties"]["tags"],
                    },
                },
                statuses=(400, 404, 422),
            ),
        },
        **{f"/api/sessions/{{session_id}}/{action}": op for action, op in steer.items()},
        "/api/sessions/{session_id}/notes": {
            "post": operation(
                "Add a note at a moment (default: now, or the end)",
                json_body(ref("ContextItem"), "the note"),
                parameters=[SESSION_ID],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["content"],
                    "properties": {
                        "content": {"type": "string", "maxLength": MAX_NOTE},
                        "type": {"type": "string", "enum": list(CONTEXT_ITEM_TYPES)},
                        "media_offset": {"type": "number", "minimum": 0},
                    },
                },
                statuses=(400, 404, 422),
                code="201",
            )
        },
        "/api/sessions/{session_id}/stats": {
            "get": operation(
                "Live recording stats, with free disk and time left",
                json_body(ref("RecordingStats"), "stats"),
                parameters=[SESSION_ID],
                statuses=(404, 422),
            )
        },
        "/api/sessions/{session_id}/events": {
            "get": operation(
                "Events of a session (SSE: `state`, `stats`, `end`)",
                sse,
                parameters=[SESSION_ID],
                statuses=(404, 422),
            )
        },
        "/api/sessions/{session_id}/enrich": {
            "post": operation(
                'Queue enrichment stages again (body: {"stages": [...]}, default all)',
                json_body(OBJECT, "the queued jobs"),
                parameters=[SESSION_ID],
                statuses=(404, 422),
                code="202",
            )
        },
        "/api/sessions/{session_id}/export.zip": {
            "get": operation(
                "The session's export as a zip, streamed: video.mp4, session.json, "
                "transcript.srt, transcript.vtt, summary.md, screenshots/",
                {
                    "description": "a zip with one folder, taskerino-ID",
                    "content": {"application/zip": {"schema": {"type": "string"}}},
                },
                parameters=[
                    SESSION_ID,
                    param(
                        "format",
                        "query",
                        {"type": "string"},
                        "what to include, comma-separated or repeated: "
                        + ",".join(EXPORT_FORMATS)
                        + " (default all)",
                    ),
                ],
                statuses=(404, 422),
            )
        },
        "/api/screenshots/{screenshot_id}": {
            "patch": operation(
                "Comment or flag a screenshot",
                json_body(ref("Screenshot"), "the screenshot"),
                parameters=[param("screenshot_id", "path", ID)],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "comment": {"type": "string", "maxLength": MAX_NOTE},
                        "flagged": BOOL,
                    },
                },
                statuses=(400, 404, 422),
            )
        },
        "/api/sources": {"get": operation("What can be recorded", json_body(OBJECT, "sources"))},
        "/api/sources/{source_id}/thumbnail": {
            "get": operation(
                "A JPEG of what a source shows now",
                {"description": "JPEG", "content": {"image/jpeg": {}}},
                parameters=[
                    param("source_id", "path", TEXT),
                    param(
                        "width",
                        "query",
                        {
                            "type": "integer",
                            "minimum": THUMBNAIL_WIDTH_RANGE[0],
                            "maximum": THUMBNAIL_WIDTH_RANGE[1],
                        },
                    ),
                ],
                statuses=(409, 422),
            )
        },
        "/api/media/{attachment_id}": {"get": media_operation},
        "/api/search": {
            "get": operation(
                "Full-text search over OCR, transcripts, activity, notes, comments, names",
                json_body(OBJECT, "hits, best first, with snippets and OCR word boxes"),
                parameters=[
                    param("q", "query", {"type": "string", "maxLength": MAX_QUERY}),
                    param("session", "query", ID),
                    param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
                    param("offset", "query", {"type": "integer", "minimum": 0}),
                ],
                statuses=(422,),
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Taskerino",
            "version": version,
            "description": "Review and record work sessions. Authenticate with "
            "`Authorization: Bearer TOKEN` (the token of the login URL).",
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": TEXT, "details": OBJECT},
                },
                "Session": OBJECT,
                "SessionPage": {
                    "type": "object",
                    "properties": {
                        "sessions": {"type": "array", "items": OBJECT},
                        "total": {"type": "integer"},
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer"},
                    },
                },
                "ContextItem": OBJECT,
                "Screenshot": OBJECT,
                "RecordingStats": OBJECT,
            },
        },
        "security": [{"token": []}],
        "paths": paths,
    }
