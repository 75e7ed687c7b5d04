"""The team blob store: objects in an S3-compatible bucket, named by their SHA-256.

`s3://bucket/prefix` names the bucket and the folder of keys (`prefix/ab/abcdef…`). The
endpoint, region and credentials come from boto3's standard configuration
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, the
shared config files, …), so the same URL works against AWS or any S3-compatible server.

Integrity: a small file goes up in one PUT carrying its expected SHA-256
(`ChecksumSHA256`), which the server checks against the bytes it received; a large one in
parts, each with its own SHA-256 checked by the server, while the whole file is hashed as
it is read and the upload is completed only when that hash is the expected digest
(aborted otherwise). Either way no object ever holds bytes other than its name says.

A multipart upload in flight is the analogue of the folder store's temporary file: a
small marker object `prefix/.tmp/<id>` names its writer, so that `remove_stale_temp` can
abort the uploads of writers that are gone.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO, Self
from urllib.parse import unquote

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..errors import InvalidInput, NotFound, StorageError
from ..process import ProcessOwner, current_owner
from .base import BlobStore, check_digest, is_digest

MIN_PART = 5 << 20  # S3 refuses smaller parts (but the last)
DEFAULT_TRANSFER = TransferConfig(
    multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=4
)
# A server that stopped answering (frozen, or a network that drops packets) is an error
# within about half a minute, not a hang: boto3's defaults (60 s to read, 5 attempts in
# its legacy mode) held an upload for up to five minutes. Bounded here — 5 s to connect,
# 10 s without a byte of the answer, 3 attempts with standard (jittered) backoff — and
# retried again by the caller where it matters (`Uploads` keeps a recording's media in
# staging and retries until the bucket answers).
CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
)
# A multipart upload this old is abandoned whoever started it (ours take seconds).
STALE_UPLOAD_SECONDS = 24 * 3600.0
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket` or `s3://bucket/some/prefix` (no slashes at the
    ends of the prefix). InvalidInput for anything else."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "s3" or not sep:
        raise InvalidInput(f"{url!r} is not an S3 URL: write s3://bucket or s3://bucket/prefix")
    if "?" in rest or "#" in rest:
        raise InvalidInput(f"{url!r} has a query or fragment, which s3:// URLs do not take")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(
            f"{url!r} names no valid bucket: a bucket name is 3 to 63 lowercase letters, "
            "digits, dots and hyphens (the endpoint comes from AWS_ENDPOINT_URL)"
        )
    prefix = unquote(prefix).strip("/")
    if any(part in (".", "..") for part in prefix.split("/")) or "//" in prefix:
        raise InvalidInput(f"{url!r} has an empty, '.' or '..' part in its prefix")
    return bucket, prefix


def storage_error(exc: Exception, what: str) -> StorageError:
    """One clear line for what boto3 raised while doing `what`."""
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"cannot {what}: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "error")
        message = error.get("Message") or code
        hints = {
            "NoSuchBucket": "the bucket does not exist",
            "InvalidAccessKeyId": "the access key is not known to the server",
            "SignatureDoesNotMatch": "the secret key is wrong",
            "AccessDenied": "access denied",
            "403": "access denied (check the credentials)",
        }
        return StorageError(f"cannot {what}: {hints.get(code, message)} ({code})")
    if isinstance(exc, BotoCoreError):
        return StorageError(f"cannot {what}: {exc}")
    return StorageError(f"cannot {what}: {exc}")


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class _Body(io.RawIOBase):
    """An object's streaming body as a raw file; a broken connection is a StorageError."""

    def __init__(self, body: Any, what: str) -> None:
        self._body = body
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as exc:
            raise storage_error(exc, self._what) from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


class S3BlobStore(BlobStore):
    """Blobs as objects `prefix/ab/abcdef…` in one bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        transfer: TransferConfig = DEFAULT_TRANSFER,
        stale_after: float = STALE_UPLOAD_SECONDS,
    ) -> None:
        self.bucket = bucket
        self.stale_after = stale_after
        self.prefix = prefix.strip("/")
        self._base = f"{self.prefix}/" if self.prefix else ""
        self.transfer = transfer
        self.part_size = max(MIN_PART, int(transfer.multipart_chunksize))
        self.where = f"s3://{bucket}/{self.prefix}".rstrip("/")
        try:
            # Endpoint, region and credentials as boto3 is configured.
            self.client = client or boto3.session.Session().client("s3", config=CLIENT_CONFIG)
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if _missing(exc) or exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise StorageError(
                    f"cannot open the media store {self.where}: the bucket does not exist"
                ) from exc
            raise storage_error(exc, f"open the media store {self.where}") from exc
        except BotoCoreError as exc:
            raise storage_error(exc, f"open the media store {self.where}") from exc
        except ValueError as exc:  # botocore's word for a malformed endpoint URL
            raise StorageError(
                f"cannot open the media store {self.where}: boto3's configuration is not "
                f"usable ({exc}; see AWS_ENDPOINT_URL)"
            ) from exc

    @classmethod
    def from_url(cls, url: str) -> Self:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix)

    def key(self, digest: str) -> str:
        check_digest(digest)
        return f"{self._base}{digest[:2]}/{digest}"

    # --- writing ------------------------------------------------------------------------
    def put_file(self, source: Path, digest: str, *, move: bool = False) -> int:
        key = self.key(digest)
        stored = self._size(key)
        if stored is not None:
            return stored
        try:
            size = source.stat().st_size
            if size < max(self.transfer.multipart_threshold, 1):
                self._put_whole(source, key, digest)
            else:
                self._put_parts(source, key, digest)
        except OSError as exc:
            raise StorageError(f"cannot read media file {source}: {exc.strerror or exc}") from exc
        except (BotoCoreError, ClientError) as exc:
            raise storage_error(exc, f"upload {digest[:12]}… to {self.where}") from exc
        # `move` may consume the source: the bytes are safe in the bucket, but the caller
        # may still want them (staging), so the source is left in place.
        return size

    def _put_whole(self, source: Path, key: str, digest: str) -> None:
        data = source.read_bytes()
        actual = hashlib.sha256(data)
        if actual.hexdigest() != digest:
            raise StorageError(f"media file {source.name} does not match its SHA-256 {digest}")
        # The server recomputes the SHA-256 of what arrived and refuses a mismatch.
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ChecksumSHA256=base64.b64encode(actual.digest()).decode(),
        )

    def _put_parts(self, source: Path, key: str, digest: str) -> None:
        upload_id, marker = self._start_upload(key, current_owner())
        try:
            parts = self._send_parts(source, key, upload_id, digest)
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(BotoCoreError, ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        finally:
            with contextlib.suppress(BotoCoreError, ClientError):
                self.client.delete_object(Bucket=self.bucket, Key=marker)

    def _start_upload(self, key: str, owner: ProcessOwner) -> tuple[str, str]:
        """Begin a multipart upload with its marker; (upload id, marker key)."""
        started = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256"
        )
        upload_id = str(started["UploadId"])
        marker = f"{self._base}.tmp/{owner.pid}-{owner.token}-{uuid.uuid4().hex}"
        note = {"owner": owner.encode(), "key": key, "upload_id": upload_id}
        try:
            self.client.put_object(Bucket=self.bucket, Key=marker, Body=json.dumps(note).encode())
        except BaseException:
            with contextlib.suppress(BotoCoreError, ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        return upload_id, marker

    def _send_parts(
        self, source: Path, key: str, upload_id: str, digest: str
    ) -> list[dict[str, Any]]:
        """Read the file once, in order, hashing it; send the parts a few at a time."""
        whole = hashlib.sha256()
        parts: dict[int, dict[str, Any]] = {}
        limit = max(1, int(self.transfer.max_concurrency))

        def send(number: int, data: bytes) -> None:
            sent = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm="SHA256",
            )
            parts[number] = {
                "PartNumber": number,
                "ETag": sent["ETag"],
                "ChecksumSHA256": sent.get("ChecksumSHA256"),
            }

        with ThreadPoolExecutor(limit, thread_name_prefix="s3-part") as pool:
            running: set[Future[None]] = set()
            with source.open("rb") as f:
                number = 0
                while data := f.read(self.part_size):
                    whole.update(data)
                    number += 1
                    if len(running) >= limit:
                        done, running = wait(running, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
                    running.add(pool.submit(send, number, data))
            for future in running:
                future.result()
        if whole.hexdigest() != digest:
            raise StorageError(f"media file {source.name} does not match its SHA-256 {digest}")
        return [{k: v for k, v in parts[n].items() if v is not None} for n in sorted(parts)]

    # --- reading ------------------------------------------------------------------------
    def _size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise storage_error(exc, f"look up {key} in {self.where}") from exc
        except BotoCoreError as exc:
            raise storage_error(exc, f"look up {key} in {self.where}") from exc
        return int(head["ContentLength"])

    def exists(self, digest: str) -> bool:
        return self._size(self.key(digest)) is not None

    def size(self, digest: str) -> int | None:
        """The stored object's size in bytes, None when absent."""
        return self._size(self.key(digest))

    def open(self, digest: str) -> BinaryIO:
        return self._get(digest, None)

    def open_range(self, digest: str, start: int, end: int) -> BinaryIO:
        """Bytes `start` to `end` (exclusive) only, asked of the server as a Range."""
        return self._get(digest, f"bytes={start}-{end - 1}")

    def _get(self, digest: str, byte_range: str | None) -> BinaryIO:
        key = self.key(digest)
        what = f"read {key} from {self.where}"
        extra = {"Range": byte_range} if byte_range else {}
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
        except ClientError as exc:
            if _missing(exc):
                raise NotFound(f"no blob {digest}") from exc
            raise storage_error(exc, what) from exc
        except BotoCoreError as exc:
            raise storage_error(exc, what) from exc
        return io.BufferedReader(_Body(got["Body"], what), 1 << 16)

    def local_path(self, digest: str) -> Path | None:
        check_digest(digest)
        return None

    def delete(self, digest: str) -> None:
        key = self.key(digest)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise storage_error(exc, f"delete {key} from {self.where}") from exc

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                yield from page.get("Contents", [])
        except (BotoCoreError, ClientError) as exc:
            raise storage_error(exc, f"list {self.where}") from exc

    def digests(self) -> Iterator[str]:
        for item in self._list(self._base):
            folder, _, name = str(item["Key"])[len(self._base) :].partition("/")
            if is_digest(name) and folder == name[:2]:
                yield name

    def sizes(self) -> dict[str, int]:
        found = {}
        for item in self._list(self._base):
            folder, _, name = str(item["Key"])[len(self._base) :].partition("/")
            if is_digest(name) and folder == name[:2]:
                found[name] = int(item["Size"])
        return found

    def remove_stale_temp(self) -> list[str]:
        """Abort the multipart uploads of writers that are gone: by their marker's owner
        (a process on this machine), or by age (`stale_after`: a writer on another
        machine, or one that died before writing its marker)."""
        removed = []
        live_uploads = set()
        oldest = time.time() - self.stale_after
        for item in self._list(f"{self._base}.tmp/"):
            marker = str(item["Key"])
            try:
                got = self.client.get_object(Bucket=self.bucket, Key=marker)
                note = json.loads(got["Body"].read())
                owner = ProcessOwner.decode(note["owner"])
            except ClientError as exc:
                if _missing(exc):
                    continue  # its writer finished meanwhile
                raise storage_error(exc, f"read {marker} from {self.where}") from exc
            except (ValueError, KeyError, TypeError):
                owner = None  # a damaged marker: nobody can finish that upload
            except BotoCoreError as exc:
                raise storage_error(exc, f"read {marker} from {self.where}") from exc
            recent = item["LastModified"].timestamp() > oldest
            if owner is not None and owner.is_alive() and recent:
                live_uploads.add(note["upload_id"])
                continue
            try:
                if owner is not None:
                    self._abort(note["key"], note["upload_id"])
                self.client.delete_object(Bucket=self.bucket, Key=marker)
            except (BotoCoreError, ClientError) as exc:
                raise storage_error(exc, f"clean {self.where}") from exc
            removed.append(marker.rpartition("/")[2])
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._base
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if (
                        upload["UploadId"] not in live_uploads
                        and upload["Initiated"].timestamp() <= oldest
                    ):
                        self._abort(upload["Key"], upload["UploadId"])
                        removed.append(f"upload {upload['UploadId']}")
        except (BotoCoreError, ClientError) as exc:
            raise storage_error(exc, f"clean {self.where}") from exc
        return removed

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(ClientError):  # already gone: fine
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
