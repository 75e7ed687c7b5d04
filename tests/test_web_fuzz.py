"""The JSON API fuzzed from its own description (`/openapi.json`) with Hypothesis: for each
described operation, path and query parameters and bodies drawn from their schemas or
from anything at all, sent in-process to the real app over a real library with a recorded
session. No answer may be a 500, hold a traceback, or use a status the description does
not give; a refused request leaves no session behind, and nothing is left recording."""

from __future__ import annotations

import contextlib
import json
import re
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from taskerino.errors import TaskerinoError
from taskerino.models import SessionConfig
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualDisplay
from taskerino.web import create_app
from taskerino.web.security import allowed_hosts, load_token

PORT = 8741
BASE = f"http://127.0.0.1:{PORT}"
CASES = 200
# Streams that never end by themselves: opened, their first bytes read, closed.
STREAMS = ("/api/events", "/api/sessions/{session_id}/events")

Json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)
# Text that ids, paths and parsers trip on, and text of any kind.
NASTY = st.sampled_from(
    ["", " ", "..", "../../etc/passwd", "%2e%2e", "a" * 300, "0", "-1", "1e309", "NaN",
     "null", "true", "display:0", "test:", "\u202e", "😀", "x\x00y", '"', "*", "AND"]
)  # fmt: skip
ANY_TEXT = NASTY | st.text(max_size=40)
ASCII = st.text(string.printable.strip("\r\n\x0b\x0c"), max_size=30)  # what a header can carry
HEADERS = {
    "Range": st.sampled_from(
        ["bytes=0-99", "bytes=-10", "bytes=10-", "bytes=5-1", "bytes=999999999-", "items=0-1"]
    )
    | ASCII
}


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def valid(spec: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that the schema allows (the subset of JSON Schema the description uses)."""
    schema = resolve(spec, schema)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= 100)
        return st.text(max_size=min(schema.get("maxLength", 40), 40))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        size = min(schema.get("maxItems", 5), 5)
        return st.lists(valid(spec, schema.get("items", {})), max_size=size)
    if kind == "object":
        properties = {k: valid(spec, v) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: v for k, v in properties.items() if k in required},
            optional={k: v for k, v in properties.items() if k not in required},
        )
    return Json


def anything(spec: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """What the schema allows, or something that it does not."""
    return st.one_of(valid(spec, schema), Json, ANY_TEXT)


def as_query(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory, xdisplay: VirtualDisplay
) -> Iterator[Taskerino]:
    """A library with one recorded session: screenshots, video, a note."""
    home = tmp_path_factory.mktemp("fuzz-home")
    with Taskerino.open(home) as opened:
        config = SessionConfig(
            screenshot_interval=1.0,
            video=True,
            sources=["test:blue"],
            fps=10,
            width=320,
            height=240,
        )
        session = opened.start(StartRequest(name="Fuzzed", config=config, tags=["fuzz"]))
        time.sleep(1.5)
        opened.end(session.id)
        opened.add_note(session.id, "a note to find", media_offset=0.5)
        yield opened


def test_the_api_fuzzed_from_its_description(library: Taskerino) -> None:
    token = load_token(library.home)
    app = create_app(library, token=token, port=PORT, hosts=allowed_hosts("127.0.0.1", PORT))
    session = library.find_sessions().sessions[0]
    full = library.get(session.id)
    known = {
        "session_id": [session.id],
        "screenshot_id": [s.id for s in full.screenshots],
        "attachment_id": list(library.session_json(session.id)["attachments"]),
        "source_id": ["display:1", "test:blue", "window:0x1"],
    }
    started: list[str] = []  # sessions that valid requests started: ended at once

    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        spec = client.get("/openapi.json").json()
        operations = [
            (path, method, op)
            for path, methods in spec["paths"].items()
            for method, op in methods.items()
        ]
        assert len(operations) == 19  # every operation of the API (see test_web_api)

        @st.composite
        def requests(draw: st.DrawFn) -> tuple[str, str, str, dict[str, Any]]:
            path, method, op = draw(st.sampled_from(operations))
            url = path
            query: dict[str, str] = {}
            headers: dict[str, str] = {}
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    value = draw(st.sampled_from(known[p["name"]]) | ANY_TEXT)
                    # Dots escaped too: "/../" must reach the route, not be resolved away.
                    escaped = quote(str(value), safe="").replace(".", "%2E") or "%20"
                    url = url.replace("{" + p["name"] + "}", escaped)
                elif p["in"] == "header" and draw(st.booleans()):
                    headers[p["name"]] = draw(HEADERS.get(p["name"], ASCII))
                elif p["in"] == "query" and draw(st.booleans()):
                    query[p["name"]] = as_query(draw(anything(spec, p["schema"])))
            if draw(st.integers(0, 9)) == 0:  # a parameter nobody described
                query[draw(st.text(string.ascii_lowercase, min_size=1, max_size=8))] = "x"
            extra: dict[str, Any] = {"params": query, "headers": headers}
            if "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                body = draw(
                    st.one_of(
                        valid(spec, schema).map(lambda b: ("json", b)),
                        Json.map(lambda b: ("json", b)),
                        st.binary(max_size=40).map(lambda b: ("content", b)),
                    )
                )
                extra[body[0]] = body[1]
            return path, method, url, extra

        @settings(
            max_examples=CASES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(requests())
        def case(request: tuple[str, str, str, dict[str, Any]]) -> None:
            path, method, url, extra = request
            before = library.find_sessions(limit=1).total
            if path in STREAMS:
                with client.stream(method.upper(), url, **extra) as response:
                    body = next(response.iter_bytes(), b"") if response.status_code == 200 else b""
                    body = body if response.status_code == 200 else response.read()
            else:
                response = client.request(method.upper(), url, **extra)
                body = response.content
            shown = f"{method.upper()} {url} {extra} -> {response.status_code} {body[:300]!r}"
            assert response.status_code < 500, shown
            assert b"Traceback" not in body, shown
            described = {int(code) for code in spec["paths"][path][method]["responses"]}
            # Any path may name no route at all (an id holding "/"): 404, as for any URL.
            assert response.status_code in described | {404, 405}, shown
            if response.status_code >= 400 and url.startswith("/api/"):
                assert response.headers["content-type"] == "application/json", shown
                assert "error" in response.json(), shown
            if path == "/api/sessions" and method == "post" and response.status_code == 201:
                started.append(response.json()["id"])
                library.end(started[-1])
            else:
                assert library.find_sessions(limit=1).total == before, shown

        try:
            case()
        finally:
            for sid in started:  # also when a case failed: nothing is left recording
                with contextlib.suppress(TaskerinoError):
                    library.end(sid)
    assert library.find_sessions(status="active,paused").total == 0
    log = Path(library.home) / "errors.log"
    assert not log.exists() or not re.search(r"\S", log.read_text()), log.read_text()
