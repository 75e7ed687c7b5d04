"""Paths inside `scheme:` URLs of stores on this machine's disk."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from ..errors import InvalidInput


def url_path(url: str, scheme: str) -> Path:
    """The path of `scheme:///abs/path`, `scheme://localhost/abs/path` or
    `scheme:relative/path` (percent-escapes decoded; relative to the working folder)."""
    given, colon, rest = url.partition(":")
    if not colon or given.lower() != scheme:
        raise InvalidInput(f"{url!r} is not a {scheme}: URL")
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise InvalidInput(
                f"{url!r} names the host {host!r}: a {scheme}: URL names a path on this "
                f"machine ({scheme}:///absolute/path or {scheme}:relative/path)"
            )
        rest = slash + path
    if "?" in rest or "#" in rest:
        raise InvalidInput(
            f"{url!r} has a query or fragment, which {scheme}: URLs do not take "
            "(write a ? or # in a file name as %3F or %23)"
        )
    path = unquote(rest)
    if not path:
        raise InvalidInput(f"{url!r} names no path")
    return Path(path)
