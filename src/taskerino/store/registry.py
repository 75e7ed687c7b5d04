"""Back ends chosen by URL (placeholder until the store contract work lands)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput
from .base import BlobStore, Store


def open_store(url: str | None, default_path: Path) -> Store:
    from .sqlite import SQLiteStore

    if url is None:
        return SQLiteStore(default_path)
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url[len("sqlite://") :]))
    raise InvalidInput(f"unsupported store URL {url!r}: use sqlite:///PATH")


def open_blob_store(url: str | None, default_folder: Path) -> BlobStore:
    from .files import FolderBlobStore

    if url is None:
        return FolderBlobStore(default_folder)
    raise InvalidInput(f"unsupported media URL {url!r}")
