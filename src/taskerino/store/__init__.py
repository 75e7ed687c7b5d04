"""Metadata (`Store`) and media bytes (`BlobStore`) behind interfaces; embedded defaults."""

from .base import BlobStore, Store
from .files import FolderBlobStore
from .registry import open_blob_store, open_store
from .sqlite import SQLiteStore

__all__ = ["BlobStore", "FolderBlobStore", "SQLiteStore", "Store", "open_blob_store", "open_store"]
