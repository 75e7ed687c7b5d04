"""The back ends every contract test runs against.

A back end joins by adding one entry to `STORE_BACKENDS` or `BLOB_BACKENDS`: a context
manager that, given a fresh temporary folder, makes an empty store and yields how to reach
it (its URL), cleaning up afterwards. Tests open stores from the URL, also in other
processes. PostgreSQL runs in the one throw-away cluster of the test run (`postgres` in
tests/conftest.py); each test gets a database of its own. A blob back end behind a server
goes in `SERVED_BLOB_BACKENDS`, given the server (started once for the run by its fixture)
instead of the folder: S3 runs against moto's server mode on loopback, the stand-in for S3.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from taskerino.process import ProcessOwner
from taskerino.store import BlobStore, Store, open_blob_store, open_store
from taskerino.store.s3 import S3BlobStore

from ..postgres_server import PostgresServer
from ..s3_server import MotoS3

ODD_NAME = "folder with spaces – ünïcødé ✓"
DEAD_PID = 999_999_999  # above any pid_max: no process has it


@dataclass(frozen=True)
class StoreBackend:
    url: str

    def open(self) -> Store:
        """A new store object on the same data (its own connections, like another client)."""
        return open_store(self.url, Path("never-used.db"))


@dataclass(frozen=True)
class BlobBackend:
    url: str
    # Leaves what a writer killed in the middle of `put_file` leaves; returns its name.
    leave_dead_writers_temp: Callable[[], str]

    def open(self) -> BlobStore:
        return open_blob_store(self.url, Path("never-used"))


@contextmanager
def sqlite_file(folder: Path) -> Iterator[StoreBackend]:
    folder.mkdir(parents=True, exist_ok=True)
    yield StoreBackend("sqlite://" + quote(str(folder / "taskerino.db")))


@contextmanager
def blob_folder(folder: Path) -> Iterator[BlobBackend]:
    root = folder / "blobs"

    def leave_dead_writers_temp() -> str:
        name = f"{DEAD_PID}-1-{uuid.uuid4().hex}"
        (root / ".tmp").mkdir(parents=True, exist_ok=True)
        (root / ".tmp" / name).write_bytes(b"half of it")
        return name

    yield BlobBackend("file://" + quote(str(root)), leave_dead_writers_temp)


STORE_BACKENDS: dict[str, Callable[[Path], AbstractContextManager[StoreBackend]]] = {
    "sqlite file": sqlite_file,
    "sqlite file, odd folder": lambda tmp: sqlite_file(tmp / ODD_NAME),
}


@contextmanager
def s3_backend(server: MotoS3, prefix: str) -> Iterator[BlobBackend]:
    """A fresh bucket on the run's S3 stand-in (moto's server mode)."""
    with server.bucket() as bucket:
        url = f"s3://{bucket}/{quote(prefix)}" if prefix else f"s3://{bucket}"

        def leave_dead_writers_temp() -> str:
            # What a writer killed half way through a multipart upload leaves: the upload
            # with one part sent, and its marker naming the dead writer.
            blobs = open_blob_store(url, Path("never-used"))
            assert isinstance(blobs, S3BlobStore)
            dead = ProcessOwner(socket.gethostname(), DEAD_PID, "1")
            key = blobs.key("f" * 64)
            upload_id, marker = blobs._start_upload(key, dead)
            blobs.client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"half of it"
            )
            return marker.rpartition("/")[2]

        yield BlobBackend(url, leave_dead_writers_temp)


BLOB_BACKENDS: dict[str, Callable[[Path], AbstractContextManager[BlobBackend]]] = {
    "folder": blob_folder,
    "folder with spaces": lambda tmp: blob_folder(tmp / ODD_NAME),
}
# Back ends behind a server that the tests start: (the server's fixture, the back end).
SERVED_BLOB_BACKENDS: dict[str, Callable[[Any], AbstractContextManager[BlobBackend]]] = {
    "s3": lambda server: s3_backend(server, ""),
    "s3 with a prefix": lambda server: s3_backend(server, "team/media ✓"),
}


@contextmanager
def postgres_database(server: PostgresServer, *, plain: bool = False) -> Iterator[StoreBackend]:
    url = server.new_database(migrated=True, plain=plain)
    try:
        yield StoreBackend(url)
    finally:
        server.drop_database(url)


# PostgreSQL twice: as a superuser, so that the store creates the RUM index and search ranks
# in it, and as a user who may not create the extension, so that search ranks from the
# table (the GIN index), as on a server without RUM.
POSTGRES_BACKENDS = {"postgresql": False, "postgresql without rum": True}


@pytest.fixture(params=[*STORE_BACKENDS, *POSTGRES_BACKENDS])
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    if request.param in POSTGRES_BACKENDS:
        server = request.getfixturevalue("postgres")
        with postgres_database(server, plain=POSTGRES_BACKENDS[request.param]) as backend:
            yield backend
        return
    with STORE_BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture
def store(store_backend: StoreBackend) -> Iterator[Store]:
    opened = store_backend.open()
    yield opened
    opened.close()


@pytest.fixture(params=[*BLOB_BACKENDS, *SERVED_BLOB_BACKENDS])
def blob_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobBackend]:
    if request.param in SERVED_BLOB_BACKENDS:
        server = request.getfixturevalue("s3_server")
        with SERVED_BLOB_BACKENDS[request.param](server) as backend:
            yield backend
        return
    with BLOB_BACKENDS[request.param](tmp_path) as backend:
        yield backend


@pytest.fixture
def blobs(blob_backend: BlobBackend) -> BlobStore:
    return blob_backend.open()
