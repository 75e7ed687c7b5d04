"""The web app in-process (Starlette's TestClient over the real ASGI app and a real library
with real recordings): every endpoint, and every security rule of §6."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskerino.models import SessionConfig
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualDisplay
from taskerino.web import create_app
from taskerino.web.api import ROUTES
from taskerino.web.security import TOKEN_FILE, Secrets, allowed_hosts, load_token

from .cli_helpers import TASKERINO
from .enriched import Enriched

PORT = 8741
BASE = f"http://127.0.0.1:{PORT}"
VIDEO = {"video": True, "sources": ["test:blue"], "fps": 10, "size": "320x240"}


def wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, xdisplay: VirtualDisplay
) -> Iterator[Taskerino]:
    """A library with one recorded session: screenshots every second, video, a note."""
    home = tmp_path_factory.mktemp("web-home")
    library = Taskerino.open(home)
    config = SessionConfig(
        screenshot_interval=1.0,
        video=True,
        sources=["test:blue"],
        fps=10,
        width=320,
        height=240,
    )
    session = library.start(
        StartRequest(name="Invoice retry hunt", config=config, tags=["billing"])
    )
    time.sleep(2.6)
    library.end(session.id)
    library.add_note(session.id, "retry loop starts here", media_offset=1.5)
    yield library
    library.close()


@pytest.fixture(scope="module")
def token(recorded: Taskerino) -> str:
    return load_token(recorded.home)


@pytest.fixture(scope="module")
def client(recorded: Taskerino, token: str) -> Iterator[TestClient]:
    app = create_app(recorded, token=token, port=PORT, hosts=allowed_hosts("127.0.0.1", PORT))
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


@pytest.fixture(scope="module")
def session_id(recorded: Taskerino) -> str:
    return recorded.find_sessions(query="Invoice").sessions[0].id


def anonymous(client: TestClient) -> TestClient:
    """A client of the same app without credentials."""
    return TestClient(client.app, base_url=BASE, follow_redirects=False)


# --- the token ------------------------------------------------------------------------------
def test_token_file_is_private_and_kept_across_restarts(tmp_path: Path) -> None:
    first = load_token(tmp_path)
    path = tmp_path / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 40
    assert load_token(tmp_path) == first
    path.chmod(0o644)  # loosened by someone: tightened again, and kept
    assert load_token(tmp_path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- who may talk ---------------------------------------------------------------------------
def test_no_token_is_401(client: TestClient, session_id: str) -> None:
    bare = anonymous(client)
    for path in ("/api/health", "/api/sessions", f"/api/sessions/{session_id}", "/openapi.json"):
        response = bare.get(path)
        assert response.status_code == 401, path
        assert "token" in response.json()["error"]
    page = bare.get("/")
    assert page.status_code == 401 and "login URL" in page.text
    wrong = bare.get("/api/health", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert bare.get("/static/style.css").status_code == 200  # no data in there


def test_login_url_sets_a_strict_cookie_and_drops_the_token(client: TestClient, token: str) -> None:
    bare = anonymous(client)
    response = bare.get(f"/?status=completed&token={token}")
    assert response.status_code == 303
    assert response.headers["location"] == "/?status=completed"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
    assert bare.get("/api/health").status_code == 200  # the cookie is enough to read
    assert anonymous(client).get("/?token=wrong").status_code == 401


def test_foreign_host_is_refused(client: TestClient) -> None:
    for host in ("evil.example:8741", "127.0.0.1:9999", "attacker.test"):
        response = client.get("/api/health", headers={"Host": host})
        assert response.status_code == 403, host
        assert "Host" in response.json()["error"]
    assert client.get("/api/health", headers={"Host": f"localhost:{PORT}"}).status_code == 200


def test_cross_origin_state_changes_are_refused(
    client: TestClient, session_id: str, token: str
) -> None:
    path = f"/api/sessions/{session_id}/notes"
    note = {"content": "x", "media_offset": 0.5}
    foreign = client.post(path, json=note, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["error"]
    by_referer = client.post(path, json=note, headers={"Referer": "http://evil.example/page"})
    assert by_referer.status_code == 403

    browser = anonymous(client)
    browser.get(f"/?token={token}")  # logged in by cookie
    assert browser.post(path, json=note).status_code == 403  # no Origin or Referer
    same = {"Origin": BASE}
    missing_csrf = browser.post(path, json=note, headers=same)
    assert missing_csrf.status_code == 403 and "CSRF" in missing_csrf.json()["error"]
    csrf = Secrets(token, PORT).csrf
    wrong = browser.post(path, json=note, headers={**same, "X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    good = browser.post(path, json=note, headers={**same, "X-CSRF-Token": csrf})
    assert good.status_code == 201
    referer = {"Referer": f"{BASE}/sessions/{session_id}", "X-CSRF-Token": csrf}
    assert browser.post(path, json=note, headers=referer).status_code == 201
    # The CSRF token is in the page, for its scripts.
    assert f'content="{csrf}"' in browser.get(f"/sessions/{session_id}").text


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for response in (client.get("/"), client.get("/api/health"), anonymous(client).get("/")):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"


# --- sessions ---------------------------------------------------------------------------------
def test_list_filters_sorts_and_pages(client: TestClient, recorded: Taskerino) -> None:
    for name, tags in (("Deploy logs", ["ops"]), ("Standup", ["ops", "team"])):
        started = recorded.start(
            StartRequest(name=name, config=SessionConfig(**_shots()), tags=tags)
        )
        recorded.end(started.id)
    everything = client.get("/api/sessions").json()
    assert everything["total"] >= 3 and everything["offset"] == 0
    names = [s["name"] for s in everything["sessions"]]
    assert names.index("Standup") < names.index("Invoice retry hunt")  # newest first
    assert [s["name"] for s in client.get("/api/sessions?tag=team").json()["sessions"]] == [
        "Standup"
    ]
    assert {
        s["name"] for s in client.get("/api/sessions?tag=ops&sort=name").json()["sessions"]
    } == {
        "Deploy logs",
        "Standup",
    }
    by_text = client.get("/api/sessions?q=invoice").json()["sessions"]
    assert [s["name"] for s in by_text] == ["Invoice retry hunt"]
    assert by_text[0]["thumbnail_url"].startswith("/api/media/")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert (
        client.get(f"/api/sessions?from={today}&to={today}").json()["total"] == everything["total"]
    )
    assert client.get("/api/sessions?to=2000-01-01").json()["total"] == 0
    page = client.get("/api/sessions?sort=oldest&limit=1&offset=1").json()
    assert page["limit"] == 1 and page["offset"] == 1 and len(page["sessions"]) == 1
    assert page["sessions"][0]["name"] == "Deploy logs"
    assert client.get("/api/sessions?status=completed").json()["total"] == everything["total"]
    assert client.get("/api/sessions?status=active,paused").json()["total"] == 0
    for bad in ("status=done", "from=yesterday", "limit=0", "limit=9999", "sort=size", "offset=-1"):
        response = client.get(f"/api/sessions?{bad}")
        assert response.status_code == 422, bad
        assert response.json()["error"]


def _shots() -> dict[str, Any]:
    return {
        "screenshots": False,
        "video": True,
        "sources": ["test:red"],
        "width": 320,
        "height": 240,
    }


def test_get_session_gives_urls_not_paths(client: TestClient, session_id: str) -> None:
    data = client.get(f"/api/sessions/{session_id}").json()
    assert data["id"] == session_id and data["status"] == "completed"
    assert data["screenshots"] and data["video"]["full_video_attachment_id"]
    assert data["media"]["mime_type"] == "video/mp4"
    for attachment in data["attachments"].values():
        assert "path" not in attachment
        assert attachment["url"] == f"/api/media/{attachment['id']}"
    assert client.get("/api/sessions/0123456789abcdef").status_code == 404
    assert client.get("/api/sessions/not%20an%20id").status_code == 422


def test_media_bytes_with_range(client: TestClient, recorded: Taskerino, session_id: str) -> None:
    video_id = client.get(f"/api/sessions/{session_id}").json()["video"]["full_video_attachment_id"]
    _, path = recorded.media(video_id)
    assert path is not None
    content = path.read_bytes()
    whole = client.get(f"/api/media/{video_id}")
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"] == "video/mp4"
    assert "max-age" in whole.headers["cache-control"]
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/media/{video_id}", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.content == content[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(content)}"
    tail = client.get(f"/api/media/{video_id}", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == content[-50:]


def test_an_attachment_id_never_becomes_a_path(client: TestClient) -> None:
    for attempt in ("..", "..%2F..%2Fetc%2Fpasswd", "%2E%2E", "../../etc/passwd", "a.b", "x%00y"):
        response = client.get(f"/api/media/{attempt}")
        assert 400 <= response.status_code < 500, attempt
        assert b"root:" not in response.content
    assert client.get("/api/media/0123456789abcdef0123456789abcdef").status_code == 404


def test_start_refuses_a_fifth_source_and_leaves_nothing(client: TestClient) -> None:
    before = client.get("/api/sessions").json()["total"]
    five = [f"test:s{i}" for i in range(5)]
    response = client.post("/api/sessions", json={"video": True, "sources": five})
    assert response.status_code == 422
    assert "at most 4" in response.json()["error"]
    bad = [
        {"video": True, "sources": ["test:a"], "fps": 0},
        {"video": True, "sources": ["test:a"], "size": "641x480"},
        {"video": True, "sources": ["test:a", "test:b"], "compositor": "passthrough"},
        {"video": True, "sources": ["display:abc"]},
        {"screenshots": False},
        {"screenshots": "yes"},
        {"colour": "red"},
        {"sources": "test:a"},
        {"tags": "a,b"},
    ]
    for body in bad:
        refused = client.post("/api/sessions", json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"], body
    assert client.post("/api/sessions", content=b"{not json").status_code == 400
    assert client.post("/api/sessions", json=[1, 2]).status_code == 400
    assert client.get("/api/sessions").json()["total"] == before


def test_a_session_started_through_the_api(client: TestClient, recorded: Taskerino) -> None:
    body = {"name": "From the API", "screenshots": False, "tags": ["api"], **VIDEO}
    started = client.post("/api/sessions", json=body)
    assert started.status_code == 201, started.text
    sid = started.json()["id"]
    assert started.json()["status"] == "active"
    wait_for(lambda: client.get(f"/api/sessions/{sid}/stats").json()["frames_captured"] > 3)
    stats = client.get(f"/api/sessions/{sid}/stats").json()
    assert stats["state"] == "recording" and stats["target_fps"] == 10
    assert stats["disk_free"] > 0 and stats["elapsed"] > 0
    assert client.post(f"/api/sessions/{sid}/pause").json()["status"] == "paused"
    assert client.get(f"/api/sessions/{sid}/stats").json()["state"] == "paused"
    assert client.post(f"/api/sessions/{sid}/resume").json()["status"] == "active"

    # The event stream sends the state, stats every second, and closes after the end.
    threading.Timer(2.5, lambda: recorded.end(sid)).start()
    events = _events(client, f"/api/sessions/{sid}/events")
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "state" and events[0][1]["status"] == "active"
    assert kinds.count("stats") >= 2
    assert kinds[-1] == "end" and events[-1][1]["status"] == "completed"
    captured = [data["frames_captured"] for kind, data in events if kind == "stats"]
    assert captured[-1] > captured[0]  # the figures move

    ended = client.post(f"/api/sessions/{sid}/end")  # twice: same session, no change
    assert ended.status_code == 200 and ended.json()["status"] == "completed"
    assert ended.json()["video"]["full_video_attachment_id"]
    assert client.post(f"/api/sessions/{sid}/pause").status_code == 422


def _events(client: TestClient, path: str, until: str = "end") -> list[tuple[str, Any]]:
    """The events of a stream up to and with the first `until` event (or its close)."""
    found: list[tuple[str, Any]] = []
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        for kind, data in _parse(response.iter_lines()):
            found.append((kind, data))
            if kind == until:
                break
    return found


def _parse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) of each event in the lines of a Server-Sent Events stream."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            if ": " in line:
                key, value = line.split(": ", 1)
                fields[key] = value
            continue
        if "event" in fields:
            yield fields["event"], json.loads(fields["data"])
        fields = {}


def test_start_with_a_duration_ends_by_itself(client: TestClient) -> None:
    body = {"screenshots": False, "duration": 1, **VIDEO}
    sid = client.post("/api/sessions", json=body).json()["id"]
    wait_for(lambda: client.get(f"/api/sessions/{sid}").json()["status"] == "completed")


def test_edit_session(client: TestClient, session_id: str) -> None:
    body = {
        "name": "Invoice retry hunt",
        "description": "why the total is wrong",
        "tags": ["billing", "x"],
    }
    edited = client.patch(f"/api/sessions/{session_id}", json=body)
    assert edited.status_code == 200
    assert edited.json()["description"] == "why the total is wrong"
    assert edited.json()["tags"] == ["billing", "x"]
    assert client.patch(f"/api/sessions/{session_id}", json={"name": "  "}).status_code == 422
    assert client.patch(f"/api/sessions/{session_id}", json={"tags": "x"}).status_code == 422
    assert client.patch(f"/api/sessions/{session_id}", json={"status": "active"}).status_code == 422
    assert client.patch("/api/sessions/0000", json={"name": "x"}).status_code == 404


def test_notes(client: TestClient, session_id: str) -> None:
    added = client.post(
        f"/api/sessions/{session_id}/notes", json={"content": "look", "media_offset": 2}
    )
    assert added.status_code == 201
    assert added.json()["media_offset"] == 2.0 and added.json()["type"] == "note"
    stored = client.get(f"/api/sessions/{session_id}").json()["context_items"]
    assert any(n["id"] == added.json()["id"] for n in stored)
    for body in (
        {"content": "x", "media_offset": 99999},
        {"content": ""},
        {"content": "x", "type": "todo"},
    ):
        assert client.post(f"/api/sessions/{session_id}/notes", json=body).status_code == 422, body


def test_comment_and_flag_a_screenshot(client: TestClient, session_id: str) -> None:
    shot = client.get(f"/api/sessions/{session_id}").json()["screenshots"][1]
    changed = client.patch(
        f"/api/screenshots/{shot['id']}", json={"comment": "wrong total", "flagged": True}
    )
    assert changed.status_code == 200
    assert changed.json()["flagged"] is True and changed.json()["user_comment"] == "wrong total"
    again = client.get(f"/api/sessions/{session_id}").json()["screenshots"][1]
    assert again["flagged"] is True and again["user_comment"] == "wrong total"
    assert (
        client.patch(f"/api/screenshots/{shot['id']}", json={"flagged": "yes"}).status_code == 422
    )
    assert client.patch("/api/screenshots/abc123", json={"flagged": True}).status_code == 404


def test_sources_and_their_thumbnails(client: TestClient) -> None:
    found = client.get("/api/sources").json()
    assert [d["id"] for d in found["displays"]] == ["display:1", "display:2"]
    assert {t["id"] for t in found["tests"]} >= {"test:blue"}
    for url in (found["displays"][0]["thumbnail_url"], found["tests"][0]["thumbnail_url"]):
        picture = client.get(url + "?width=200")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
        assert picture.content[:3] == b"\xff\xd8\xff"
    assert client.get("/api/sources/display:9/thumbnail").status_code == 422
    assert client.get("/api/sources/test:red/thumbnail?width=5").status_code == 422


def test_health_openapi_search_and_enrich(client: TestClient, session_id: str) -> None:
    health = client.get("/api/health").json()
    assert health["ok"] is True and health["disk_free"] > 0
    described = client.get("/openapi.json").json()
    assert described["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in described["paths"].items() for method in ops}
    for route in ROUTES:
        if route.path.startswith("/api/"):
            for method in route.methods or ():
                if method != "HEAD":
                    assert (route.path, method.lower()) in documented, (route.path, method)
    hits = client.get("/api/search?q=retry").json()
    assert hits["indexed"] is True
    assert [h["session_id"] for h in hits["hits"] if h["kind"] == "session"] == [session_id]
    assert next(h for h in hits["hits"] if h["kind"] == "session")["snippet"].startswith(
        "Invoice [retry] hunt"
    )
    assert client.get("/api/search?q=").status_code == 422
    malformed = client.get('/api/search?q="unbalanced')
    assert malformed.status_code == 422 and "error" in malformed.json()
    enrich = client.post(f"/api/sessions/{session_id}/enrich", json={"stages": ["chapters"]})
    assert enrich.status_code == 202, enrich.json()
    assert [j["kind"] for j in enrich.json()["jobs"]] == ["chapters"]
    bad = client.post(f"/api/sessions/{session_id}/enrich", json={"stages": ["paint"]})
    assert bad.status_code == 422 and "unknown stage" in bad.json()["error"]
    assert client.post("/api/sessions/0000/enrich").status_code == 404


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json()["error"]
    wrong = client.delete("/api/sessions")
    assert wrong.status_code == 405 and wrong.json()["error"]
    page = client.get("/sessions/0000")
    assert page.status_code == 404 and "<html" in page.text


def test_the_unexpected_is_logged_never_shown(
    client: TestClient, recorded: Taskerino, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> int:
        raise RuntimeError("disk probe exploded")

    monkeypatch.setattr(recorded, "disk_free", broken)
    response = client.get("/api/health")
    assert response.status_code == 500
    assert "errors.log" in response.json()["error"]
    assert "Traceback" not in response.text and "exploded" not in response.text
    log = (recorded.home / "errors.log").read_text()
    assert "RuntimeError: disk probe exploded" in log and "web GET /api/health" in log


def test_pages_render(client: TestClient, session_id: str) -> None:
    listing = client.get("/?tag=billing")
    assert listing.status_code == 200 and "Invoice retry hunt" in listing.text
    assert "Standup" not in listing.text
    bad = client.get("/?from=never")
    assert bad.status_code == 422 and "from must be a date" in bad.text
    page = client.get(f"/sessions/{session_id}").text
    assert 'data-media-offset="1.5"' in page  # the note
    assert page.count('class="item shot') >= 2
    assert "<script>" not in page  # no inline script
    assert "Start recording" in client.get("/record").text


def test_a_session_recorded_by_another_process(client: TestClient, recorded: Taskerino) -> None:
    command = [*TASKERINO, "--home", str(recorded.home), "record", "--name", "elsewhere"]
    command += ["--no-screenshots", "--video", "--source", "test:green", "--size", "320x240"]
    recorder = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: client.get("/api/sessions?status=active").json()["total"] == 1)
        sid = client.get("/api/sessions?status=active").json()["sessions"][0]["id"]
        wait_for(lambda: client.get(f"/api/sessions/{sid}/stats").status_code == 200)
        assert client.get(f"/api/sessions/{sid}/stats").json()["target_fps"] == 15
        assert client.post(f"/api/sessions/{sid}/pause").json()["status"] == "paused"
        assert client.post(f"/api/sessions/{sid}/resume").json()["status"] == "active"
        threading.Timer(2.0, lambda: client.post(f"/api/sessions/{sid}/end")).start()
        events = _events(client, f"/api/sessions/{sid}/events")
        assert [k for k, _ in events].count("stats") >= 1
        assert events[-1] == ("end", events[-1][1]) and events[-1][1]["status"] == "completed"
        _, errors = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, errors
        assert client.get(f"/api/sessions/{sid}").json()["video"]["full_video_attachment_id"]
    finally:
        if recorder.poll() is None:
            recorder.terminate()
            recorder.communicate(timeout=30)


def test_the_event_stream_follows_enrichment_until_every_stage_settles(
    enriched: Enriched, tmp_path: Path
) -> None:
    home = enriched.copy(tmp_path / "home")
    sid = enriched.session_id
    with Taskerino.open(home) as library:
        app = create_app(
            library, token=load_token(home), port=PORT, hosts=allowed_hosts("127.0.0.1", PORT)
        )
        with TestClient(app, base_url=BASE) as c:
            c.headers["Authorization"] = f"Bearer {load_token(home)}"
            queued = c.post(f"/api/sessions/{sid}/enrich", json={"stages": ["index"]})
            assert queued.status_code == 202
            worker = library.worker(1)
            runner = threading.Thread(target=worker.run, kwargs={"drain": True})
            seen: list[tuple[str, Any]] = []
            with c.stream("GET", f"/api/sessions/{sid}/events") as response:
                for kind, data in _parse(response.iter_lines()):
                    seen.append((kind, data))
                    if kind == "end":
                        runner.start()  # the stream goes on: enrichment is still to come
            runner.join(30)
    kinds = [kind for kind, _ in seen]
    states = [data["enrichment"]["index"]["status"] for kind, data in seen if kind == "state"]
    assert kinds[0] == "state" and states[0] == "pending"
    assert kinds.count("end") == 1 and kinds.index("end") < len(kinds) - 1
    assert states[-1] == "done"  # and then the stream closed by itself
    assert seen[-1][0] == "state" and seen[-1][1]["status"] == "completed"


def test_exclusions_through_the_api_and_on_the_page(
    client: TestClient, recorded: Taskerino
) -> None:
    body = {"name": "Private", "screenshots": False, **VIDEO}
    bad = client.post("/api/sessions", json={**body, "exclude": ["re:("]})
    assert bad.status_code == 422 and "exclude pattern 're:('" in bad.json()["error"]
    text = client.post("/api/sessions", json={**body, "exclude": "*KeePassXC*"})
    assert text.status_code == 422 and "must be a list" in text.json()["error"]
    started = client.post("/api/sessions", json={**body, "exclude": ["*KeePassXC*", "re:<b>"]})
    assert started.status_code == 201, started.text
    sid = started.json()["id"]
    recorded.end(sid)
    assert client.get(f"/api/sessions/{sid}").json()["config"]["exclude"] == [
        "*KeePassXC*",
        "re:<b>",
    ]
    page = client.get(f"/sessions/{sid}").text
    assert "Excluded windows" in page and "*KeePassXC*" in page
    assert "re:&lt;b&gt;" in page  # escaped like every text from a user
    plain = client.get(f"/sessions/{recorded.find_sessions(query='Invoice').sessions[0].id}")
    assert "Excluded windows" not in plain.text
