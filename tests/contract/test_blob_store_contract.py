"""The BlobStore contract (see `taskerino.store.base`), run against every back end in
conftest."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from taskerino.errors import InvalidInput, NotFound
from taskerino.store import BlobStore

from .conftest import BlobBackend


def source_file(folder: Path, content: bytes, name: str = "source.bin") -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def read(blobs: BlobStore, digest: str) -> bytes:
    with blobs.open(digest) as f:
        return f.read()


class TestBlobStoreContract:
    def test_put_then_read_back(self, blobs: BlobStore, tmp_path: Path) -> None:
        content = bytes(range(256)) * 5000  # more than one copy buffer
        source, digest = source_file(tmp_path, content)
        assert not blobs.exists(digest)
        assert blobs.put_file(source, digest) == len(content)
        assert blobs.exists(digest)
        assert read(blobs, digest) == content
        assert source.read_bytes() == content, "without move the source is left as it is"

    def test_put_with_move_may_consume_the_source(self, blobs: BlobStore, tmp_path: Path) -> None:
        source, digest = source_file(tmp_path, b"moved bytes")
        assert blobs.put_file(source, digest, move=True) == 11
        assert read(blobs, digest) == b"moved bytes"
        if source.exists():
            assert source.read_bytes() == b"moved bytes"

    def test_the_same_digest_is_stored_once_and_kept(
        self, blobs: BlobStore, tmp_path: Path
    ) -> None:
        source, digest = source_file(tmp_path, b"first")
        blobs.put_file(source, digest)
        # A second put under the same digest keeps the stored bytes and leaves its source.
        other, _ = source_file(tmp_path, b"other bytes", "other.bin")
        assert blobs.put_file(other, digest, move=True) == 5
        assert read(blobs, digest) == b"first"
        assert other.read_bytes() == b"other bytes"
        assert list(blobs.digests()) == [digest]

    def test_an_empty_file_is_a_blob(self, blobs: BlobStore, tmp_path: Path) -> None:
        source, digest = source_file(tmp_path, b"")
        assert blobs.put_file(source, digest) == 0
        assert blobs.exists(digest) and read(blobs, digest) == b""

    def test_open_a_missing_blob_is_not_found(self, blobs: BlobStore) -> None:
        with pytest.raises(NotFound):
            blobs.open("0" * 64)

    def test_delete(self, blobs: BlobStore, tmp_path: Path) -> None:
        source, digest = source_file(tmp_path, b"bye")
        kept, kept_digest = source_file(tmp_path, b"stay", "kept.bin")
        blobs.put_file(source, digest)
        blobs.put_file(kept, kept_digest)
        blobs.delete(digest)
        blobs.delete(digest)  # absent is fine
        assert not blobs.exists(digest)
        with pytest.raises(NotFound):
            blobs.open(digest)
        assert list(blobs.digests()) == [kept_digest]

    def test_digests_lists_each_blob_once(self, blobs: BlobStore, tmp_path: Path) -> None:
        assert list(blobs.digests()) == []
        expected = set()
        for i in range(20):
            source, digest = source_file(tmp_path, f"blob {i}".encode(), f"{i}.bin")
            blobs.put_file(source, digest)
            blobs.put_file(source, digest)
            expected.add(digest)
        listed = list(blobs.digests())
        assert len(listed) == 20 and set(listed) == expected

    def test_sizes_of_every_blob(self, blobs: BlobStore, tmp_path: Path) -> None:
        assert blobs.sizes() == {}
        expected = {}
        for i, content in enumerate((b"", b"four", bytes(3000))):
            source, digest = source_file(tmp_path, content, f"{i}.bin")
            blobs.put_file(source, digest)
            expected[digest] = len(content)
        assert blobs.sizes() == expected

    def test_local_path_when_there_is_one(self, blobs: BlobStore, tmp_path: Path) -> None:
        source, digest = source_file(tmp_path, b"local")
        blobs.put_file(source, digest)
        path = blobs.local_path(digest)
        if path is not None:
            assert path.read_bytes() == b"local"

    def test_another_client_sees_the_same_blobs(
        self, blobs: BlobStore, blob_backend: BlobBackend, tmp_path: Path
    ) -> None:
        source, digest = source_file(tmp_path, b"shared")
        blobs.put_file(source, digest)
        other = blob_backend.open()
        assert other.exists(digest) and read(other, digest) == b"shared"
        other.delete(digest)
        assert not blobs.exists(digest)

    def test_temp_files_of_dead_writers_are_removed(
        self, blobs: BlobStore, blob_backend: BlobBackend, tmp_path: Path
    ) -> None:
        source, digest = source_file(tmp_path, b"complete")
        blobs.put_file(source, digest)
        assert blobs.remove_stale_temp() == [], "a finished put leaves no temporary file"
        left = blob_backend.leave_dead_writers_temp()
        assert list(blobs.digests()) == [digest], "a temporary file is not a blob"
        assert blobs.remove_stale_temp() == [left]
        assert blobs.remove_stale_temp() == []
        assert read(blobs, digest) == b"complete"

    @pytest.mark.parametrize(
        "bad",
        ["A" * 64, "a" * 63, "a" * 65, "", "g" * 64, "../" + "a" * 61, "/etc/passwd"],
    )
    @pytest.mark.parametrize(
        "call",
        [
            lambda b, d, src: b.put_file(src, d),
            lambda b, d, src: b.exists(d),
            lambda b, d, src: b.open(d),
            lambda b, d, src: b.local_path(d),
            lambda b, d, src: b.delete(d),
        ],
        ids=["put_file", "exists", "open", "local_path", "delete"],
    )
    def test_a_digest_that_is_not_a_sha256_is_refused(
        self,
        blobs: BlobStore,
        tmp_path: Path,
        bad: str,
        call: Callable[[BlobStore, str, Path], object],
    ) -> None:
        source, _ = source_file(tmp_path, b"x")
        with pytest.raises(InvalidInput):
            call(blobs, bad, source)
        assert list(blobs.digests()) == []
