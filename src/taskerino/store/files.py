"""The embedded blob store: a folder of files named by their SHA-256."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Self

from ..errors import NotFound, StorageError
from ..process import ProcessOwner, current_owner
from ._urls import url_path
from .base import BlobStore, check_digest, is_digest


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderBlobStore(BlobStore):
    """`root/ab/abcdef…` per blob; writes go through `root/.tmp/<owner>-<uuid>`.

    Opened from a folder path or a `file:` URL (`file:///abs/folder`, `file:relative`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create blob folder {root}: {exc.strerror}") from exc

    @classmethod
    def from_url(cls, url: str) -> Self:
        return cls(url_path(url, "file"))

    def _path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def put_file(self, source: Path, digest: str, *, move: bool = False) -> int:
        final = self._path(digest)
        me = current_owner()
        tmp = self.tmp / f"{me.pid}-{me.token}-{uuid.uuid4().hex}"
        moved = False
        try:
            if final.exists():
                return final.stat().st_size
            if move and source.stat().st_dev == self.tmp.stat().st_dev:
                # Same disk: no copy, just make the bytes durable and rename them twice.
                with source.open("rb") as src:
                    os.fsync(src.fileno())
                os.replace(source, tmp)
                moved = True
            else:
                with source.open("rb") as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return final.stat().st_size
        except OSError as exc:
            # A failed move gives the caller its file back rather than losing the bytes.
            with contextlib.suppress(OSError):
                if moved:
                    os.replace(tmp, source)
                else:
                    tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot store media file: {exc.strerror or exc}") from exc

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        path = self._path(digest)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"no blob {digest}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read media file {path}: {exc.strerror or exc}") from exc

    def local_path(self, digest: str) -> Path | None:
        return self._path(digest)

    def delete(self, digest: str) -> None:
        path = self._path(digest)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete media file {path}: {exc.strerror or exc}") from exc

    def digests(self) -> Iterator[str]:
        try:
            for folder in self.root.iterdir():
                if len(folder.name) == 2 and folder.is_dir():
                    for file in folder.iterdir():
                        if is_digest(file.name) and file.name.startswith(folder.name):
                            yield file.name
        except OSError as exc:
            raise StorageError(f"cannot list blob folder {self.root}: {exc.strerror}") from exc

    def remove_stale_temp(self) -> list[str]:
        removed: list[str] = []
        host = current_owner().host
        try:
            for file in self.tmp.iterdir():
                pid, _, rest = file.name.partition("-")
                token = rest.partition("-")[0]
                alive = pid.isdigit() and ProcessOwner(host, int(pid), token).is_alive()
                if not alive:
                    file.unlink(missing_ok=True)
                    removed.append(file.name)
        except OSError as exc:
            raise StorageError(f"cannot clean {self.tmp}: {exc.strerror or exc}") from exc
        return removed
