"""Who may talk to the web app, and what every response says about itself.

A local web app that can start a screen recording must not be reachable by other sites or
users. `Guard` (an ASGI middleware in front of everything) enforces, in this order:

1. the Host header names the address the server is bound to (DNS rebinding);
2. the login URL `/?token=…` sets an HttpOnly, SameSite=Strict cookie and redirects to the
   same URL without the token; every other request needs that cookie or
   `Authorization: Bearer TOKEN` (static files excepted: they hold no data);
3. a state-changing request from a browser comes from this origin (`Origin`, else
   `Referer`) and, with the cookie, carries the CSRF token of the page (`X-CSRF-Token`);
   a bearer-token client that sends neither header is a script, not a browser, and passes;
4. every response carries a Content-Security-Policy that allows only this origin's own
   scripts (no inline script), and headers that keep it out of frames and sniffing.

The token lives in the data folder (`web-token`, mode 0600) and is kept across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import URL, Headers, MutableHeaders, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_FILE = "web-token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/static/",)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")


def load_token(home: Path) -> str:
    """The token of this data folder: read from `web-token`, or made and written there
    readable by its owner only. A file that others could read is tightened to 0600."""
    path = home / TOKEN_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError):
        text = ""
    if len(text) >= 32 and text.replace("-", "").replace("_", "").isalnum():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return text
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return token


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host header values that name this server. Bound to a loopback address, the
    loopback names; bound to every interface, this machine's names and addresses too."""
    names = {host if ":" not in host else f"[{host}]"}
    if host in WILDCARDS or host in ("127.0.0.1", "localhost", "::1"):
        names.update(LOOPBACK_NAMES)
    if host in WILDCARDS:
        machine = {socket.gethostname(), socket.getfqdn()}
        names.update(machine)
        for name in machine:
            try:
                for info in socket.getaddrinfo(name, None):
                    address = str(info[4][0])
                    names.add(f"[{address}]" if ":" in address else address)
            except OSError:
                continue
    return frozenset(f"{name.lower()}:{port}" for name in names if name)


class Secrets:
    """The token and what is derived from it: the cookie's value and the CSRF token (so
    that neither one reveals the token itself)."""

    def __init__(self, token: str, port: int) -> None:
        self.token = token
        self.cookie_name = f"taskerino-{port}"  # one per port: two servers, two logins
        self.cookie_value = self._derive("cookie")
        self.csrf = self._derive("csrf")

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    def is_token(self, value: str) -> bool:
        return hmac.compare_digest(value.encode(), self.token.encode())


class Guard:
    def __init__(self, app: ASGIApp, secrets: Secrets, hosts: frozenset[str]) -> None:
        self.app = app
        self.secrets = secrets
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.append(name.decode(), value.decode())
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            status, message, extra = refusal
            await _respond(scope, send_with_headers, status, message, extra)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """Why this request may not go on (status, message, headers), or None."""
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            return 403, "this server answers only to its own address (Host header refused)", []
        path: str = scope["path"]
        if path.startswith(PUBLIC_PREFIXES):
            return None
        url = URL(scope=scope)
        query = QueryParams(scope.get("query_string", b""))
        given = query.get("token")
        if given is not None and scope["method"] in ("GET", "HEAD"):
            if not self.secrets.is_token(given):
                return (
                    401,
                    "this login link is not valid: use the one 'taskerino serve' printed",
                    [],
                )
            rest = [(k, v) for k, v in query.multi_items() if k != "token"]
            target = path + ("?" + urlencode(rest) if rest else "")
            cookie = (
                f"{self.secrets.cookie_name}={self.secrets.cookie_value}; HttpOnly; "
                "SameSite=Strict; Path=/; Max-Age=31536000"
            )
            return (
                303,
                "logged in",
                [(b"location", target.encode()), (b"set-cookie", cookie.encode())],
            )
        bearer = _bearer(headers.get("authorization", ""))
        by_bearer = bearer is not None and self.secrets.is_token(bearer)
        by_cookie = not by_bearer and hmac.compare_digest(
            _cookie(headers.get("cookie", ""), self.secrets.cookie_name).encode(),
            self.secrets.cookie_value.encode(),
        )
        if not (by_bearer or by_cookie):
            return 401, "a token is needed: open the login URL that 'taskerino serve' printed", []
        if scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin") or _origin_of(headers.get("referer", ""))
        if origin is None:
            if by_cookie:
                return 403, "a state change needs a same-origin Origin or Referer header", []
        elif origin.lower() != f"{url.scheme}://{host}":
            return 403, f"cross-origin request refused (from {origin[:100]})", []
        if by_cookie and not hmac.compare_digest(
            headers.get(CSRF_HEADER, "").encode(), self.secrets.csrf.encode()
        ):
            return 403, "the CSRF token is missing or wrong: reload the page", []
        return None


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials else None


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _origin_of(referer: str) -> str | None:
    if not referer:
        return None
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"


async def _respond(
    scope: Scope, send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]]
) -> None:
    """A refusal: JSON for the API, a short page for a browser."""
    if status == 303:
        body, kind = b"", b"text/plain; charset=utf-8"
    elif scope["path"].startswith("/api/") or scope["path"] == "/openapi.json":
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        body, kind = _page(status, message), b"text/html; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    headers.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body})


def _page(status: int, message: str) -> bytes:
    from html import escape

    title = {401: "Login needed", 403: "Refused"}.get(status, "Error")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title} · Taskerino</title>"
        "<link rel='stylesheet' href='/static/style.css'></head>"
        f"<body><main class='notice'><h1>{title}</h1><p>{escape(message)}</p></main></body>"
        "</html>"
    ).encode()
