"""Stores chosen by URL (`--store`, `--media`, `TASKERINO_STORE`, `TASKERINO_MEDIA`).

Each URL scheme maps to a "module:Class" string that is imported only when a URL of that
scheme is opened, so a back end whose driver is not installed costs nothing until it is
asked for, and then fails with the command that installs it. The class opens itself from
the URL (`Store.from_url`, `BlobStore.from_url`).

- `None` or "": the embedded default (SQLite at `default_path`, blobs in `default_folder`).
- Store: `sqlite:///abs/path.db`, `sqlite:relative.db`, or a plain path to a SQLite file;
  `postgresql://user:password@host:port/database` (or `postgres://`) for the team profile.
- BlobStore: `file:///abs/folder`, `file:relative`, or a plain folder path;
  `s3://bucket/prefix` (boto3, from the `team` extra; endpoint and credentials from boto3's
  standard configuration).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from .base import BlobStore, Store
from .files import FolderBlobStore
from .sqlite import SQLiteStore

TEAM_INSTALL = "pip install 'taskerino[team]'"


@dataclass(frozen=True)
class Backend:
    target: str  # "module:Class", imported on first use
    install: str | None = None  # the command that installs what the module needs


STORES: dict[str, Backend] = {
    "sqlite": Backend("taskerino.store.sqlite:SQLiteStore"),
    "postgresql": Backend("taskerino.store.postgres:PostgresStore", TEAM_INSTALL),
    "postgres": Backend("taskerino.store.postgres:PostgresStore", TEAM_INSTALL),
}
BLOB_STORES: dict[str, Backend] = {
    "file": Backend("taskerino.store.files:FolderBlobStore"),
    "s3": Backend("taskerino.store.s3:S3BlobStore", TEAM_INSTALL),
}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)[^/@]*@")
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def open_store(url: str | None, default_path: Path) -> Store:
    """The Store a URL names; None or "" gives SQLite at `default_path`.

    InvalidInput for an unknown scheme, a back end whose driver is missing, or a malformed
    URL; StorageError when the store cannot be opened."""
    if not url:
        return SQLiteStore(default_path)
    scheme = _scheme(url)
    if scheme is None:
        return SQLiteStore(Path(url))
    cls = _backend(STORES, scheme, url, "store")
    if not issubclass(cls, Store):
        raise TypeError(f"{STORES[scheme].target} is registered for {scheme}: but is no Store")
    return cls.from_url(url)


def open_blob_store(url: str | None, default_folder: Path) -> BlobStore:
    """The BlobStore a URL names; None or "" gives the folder `default_folder`.

    InvalidInput for an unknown scheme, a back end whose driver is missing, or a malformed
    URL; StorageError when the blob store cannot be opened."""
    if not url:
        return FolderBlobStore(default_folder)
    scheme = _scheme(url)
    if scheme is None:
        return FolderBlobStore(Path(url))
    cls = _backend(BLOB_STORES, scheme, url, "media store")
    if not issubclass(cls, BlobStore):
        raise TypeError(
            f"{BLOB_STORES[scheme].target} is registered for {scheme}: but is no BlobStore"
        )
    return cls.from_url(url)


def redact(url: str) -> str:
    """The URL with any password (also libpq's `?password=`) replaced by ***, fit for
    messages and logs."""
    return _PASSWORD_PARAMETER.sub(r"\1***", _PASSWORD.sub(r"\1***@", url))


def _scheme(url: str) -> str | None:
    found = _SCHEME.match(url)
    return found.group(1).lower() if found else None


def _backend(registry: dict[str, Backend], scheme: str, url: str, what: str) -> type:
    supported = ", ".join(f"{name}:" for name in sorted(registry))
    backend = registry.get(scheme)
    if backend is None:
        raise InvalidInput(
            f"unknown {what} URL {redact(url)!r}: the schemes supported are {supported} "
            "(or a plain path)"
        )
    module_name, _, class_name = backend.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install it with {backend.install}" if backend.install else ""
        raise InvalidInput(
            f"the {what} for {scheme}: URLs is not available here ({exc}){hint}; the "
            f"schemes supported are {supported}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise TypeError(f"{backend.target} (registered for {scheme}:) is not a class")
    return cls
