"""`taskerino serve` as a real process: one login line, a fallback port, a clean stop that
ends the session it records."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from taskerino.sessions import Taskerino
from taskerino.web.security import TOKEN_FILE

from .cli_helpers import run
from .web_helpers import Served


def test_serve_prints_one_login_line_and_stops_cleanly(home: Path) -> None:
    served = Served(home, "--port", "0")
    try:
        assert served.port != 0
        assert served.http.get("/api/health").json()["ok"] is True
        login = served.http.get(f"/?token={served.token}", headers={"Authorization": ""})
        assert login.status_code == 303 and login.headers["location"] == "/"
        body = {"screenshots": False, "video": True, "sources": ["test:blue"], "size": "320x240"}
        session = served.api("POST", "/api/sessions", body)
        assert session["status"] == "active"
    finally:
        status, out, err = served.stop(signal.SIGTERM)
    assert status == 0, err
    assert out == ""  # the login URL was the only line
    assert "Traceback" not in err
    with Taskerino.open(home) as library:
        ended = library.get(session["id"])
    assert ended.status == "completed"  # the same clean end as `record`
    assert ended.video is not None and ended.video.full_video_attachment_id


def test_a_taken_port_is_reported_and_replaced(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = Served(home, "--port", str(port))
        try:
            assert served.port != port
            assert served.http.get("/api/health").status_code == 200
        finally:
            status, _, err = served.stop(signal.SIGINT)
    assert status == 0, err
    assert f"port {port} is taken; using a free one" in err
    assert served.token == (home / TOKEN_FILE).read_text().strip()
    again = Served(home, "--port", "0")  # the token is kept across restarts
    try:
        assert again.token == served.token
    finally:
        assert again.stop()[0] == 0


def test_a_stop_sent_as_soon_as_the_url_shows_stops_the_server(home: Path) -> None:
    # The URL used to be printed before uvicorn's signal handlers were in place: a SIGTERM
    # in between was swallowed and serve never ended.
    for _ in range(5):
        served = Served(home, "--port", "0")
        status, _, err = served.stop()
        assert status == 0, err


def test_bad_serve_arguments_are_exit_2(home: Path) -> None:
    for args in (("--port", "70000"), ("--port", "http"), ("--host", "no such host.invalid")):
        result = run(home, "serve", *args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ")
