"""The embedded blob store: a folder of files named by their SHA-256."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import InvalidInput, NotFound, StorageError
from ..process import ProcessOwner, current_owner
from .base import BlobStore

_DIGEST = re.compile(r"[0-9a-f]{64}")


def check_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise InvalidInput(f"invalid blob digest {digest!r}: expected 64 lowercase hex digits")
    return digest


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderBlobStore(BlobStore):
    """`root/ab/abcdef…` per blob; writes go through `root/.tmp/<owner>-<uuid>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create blob folder {root}: {exc.strerror}") from exc

    def _path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def put_file(self, source: Path, digest: str, *, move: bool = False) -> int:
        final = self._path(digest)
        if final.exists():
            return final.stat().st_size
        me = current_owner()
        tmp = self.tmp / f"{me.pid}-{me.token}-{uuid.uuid4().hex}"
        try:
            if move and source.stat().st_dev == self.tmp.stat().st_dev:
                # Same disk: no copy, just make the bytes durable and rename them twice.
                with source.open("rb") as src:
                    os.fsync(src.fileno())
                os.replace(source, tmp)
            else:
                with source.open("rb") as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot store media file: {exc.strerror or exc}") from exc
        return final.stat().st_size

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        try:
            return self._path(digest).open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"no blob {digest}") from exc

    def local_path(self, digest: str) -> Path | None:
        return self._path(digest)

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        for folder in self.root.iterdir():
            if len(folder.name) == 2 and folder.is_dir():
                for file in folder.iterdir():
                    if _DIGEST.fullmatch(file.name):
                        yield file.name

    def remove_stale_temp(self) -> list[str]:
        removed: list[str] = []
        host = current_owner().host
        for file in self.tmp.iterdir():
            pid, _, rest = file.name.partition("-")
            token = rest.partition("-")[0]
            alive = pid.isdigit() and ProcessOwner(host, int(pid), token).is_alive()
            if not alive:
                file.unlink(missing_ok=True)
                removed.append(file.name)
        return removed
