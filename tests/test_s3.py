"""The S3 blob store beyond the shared contract: integrity, multipart uploads, URLs and
errors, and the no-orphan protocol with `doctor`, against moto's S3 server mode (the
stand-in for S3; see `s3_server`)."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from taskerino.errors import InvalidInput, StorageError
from taskerino.models import Attachment, Session, SessionScreenshot, new_id, utc_now
from taskerino.process import HEARTBEAT_STALE, ProcessOwner
from taskerino.sessions import Taskerino
from taskerino.store import open_blob_store, open_store
from taskerino.store.base import BlobIntent
from taskerino.store.media import MediaLibrary
from taskerino.store.s3 import MIN_PART, S3BlobStore, parse_s3_url

from .cli_helpers import run
from .s3_server import MotoS3, free_port, object_keys

DEAD_PID = 999_999_999
# Multipart from 6 MiB, in parts of the smallest size S3 allows (5 MiB).
SMALL_PARTS = TransferConfig(
    multipart_threshold=6 << 20, multipart_chunksize=MIN_PART, max_concurrency=2
)


def source(folder: Path, content: bytes, name: str = "source.bin") -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def uploads_in_flight(server: MotoS3, bucket: str) -> list[dict[str, Any]]:
    return list(server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_a_large_file_goes_up_in_parts(s3_server: MotoS3, s3_bucket: str, tmp_path: Path) -> None:
    blobs = S3BlobStore(s3_bucket, "media", transfer=SMALL_PARTS)
    content = os.urandom((12 << 20) + 12345)  # three parts, the last a short one
    path, digest = source(tmp_path, content)
    assert blobs.put_file(path, digest) == len(content)
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=blobs.key(digest))
    # A multipart object's ETag ends with its number of parts.
    assert head["ETag"].strip('"').endswith("-3")
    with blobs.open(digest) as f:
        assert f.read() == content
    assert object_keys(s3_server.client(), s3_bucket) == [f"media/{digest[:2]}/{digest}"]
    assert uploads_in_flight(s3_server, s3_bucket) == []


@pytest.mark.parametrize("size", [1000, 12 << 20], ids=["one request", "multipart"])
def test_bytes_that_do_not_match_their_digest_leave_no_object(
    s3_server: MotoS3, s3_bucket: str, tmp_path: Path, size: int
) -> None:
    blobs = S3BlobStore(s3_bucket, "media", transfer=SMALL_PARTS)
    path, _ = source(tmp_path, os.urandom(size))
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(StorageError, match="does not match its SHA-256"):
        blobs.put_file(path, wrong)
    assert not blobs.exists(wrong)
    assert object_keys(s3_server.client(), s3_bucket) == []
    assert uploads_in_flight(s3_server, s3_bucket) == []


def test_abandoned_multipart_uploads_are_aborted_by_age(s3_server: MotoS3, s3_bucket: str) -> None:
    """Uploads whose writer cannot be asked (on another machine, or dead before it wrote
    its marker) are aborted once older than `stale_after`; younger ones are kept."""
    client = s3_server.client()
    key = f"media/{'e' * 2}/{'e' * 64}"
    client.create_multipart_upload(Bucket=s3_bucket, Key=key)  # no marker: its writer died
    remote = S3BlobStore(s3_bucket, "media")
    elsewhere = ProcessOwner("another-machine", 4242, "77")
    upload_id, marker = remote._start_upload(remote.key("d" * 64), elsewhere)
    # (moto dates every upload's start in 2010: the bare one may go at once already.)
    assert marker.rpartition("/")[2] not in remote.remove_stale_temp(), "not a day old"
    in_flight = uploads_in_flight(s3_server, s3_bucket)
    assert upload_id in [u["UploadId"] for u in in_flight]
    aged = S3BlobStore(s3_bucket, "media", stale_after=0.0)
    assert marker.rpartition("/")[2] in aged.remove_stale_temp()
    assert uploads_in_flight(s3_server, s3_bucket) == []
    assert object_keys(client, s3_bucket) == []


def test_a_range_is_asked_of_the_server(s3_bucket: str, tmp_path: Path) -> None:
    blobs = S3BlobStore(s3_bucket)
    content = bytes(range(256)) * 100
    path, digest = source(tmp_path, content)
    blobs.put_file(path, digest)
    with blobs.open_range(digest, 1000, 1500) as f:
        assert f.read() == content[1000:1500]
    with blobs.open_range(digest, len(content) - 10, len(content)) as f:
        assert f.read() == content[-10:]


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://media-bucket", "media-bucket", ""),
        ("s3://media-bucket/", "media-bucket", ""),
        ("s3://media-bucket/team/a", "media-bucket", "team/a"),
        ("s3://media-bucket/with%20space/", "media-bucket", "with space"),
    ],
)
def test_s3_urls(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == (bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:bucket",
        "s3://UPPER",
        "s3://ab",
        "s3://bucket?versionId=1",
        "s3://bucket#x",
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "s3://bad_bucket",
    ],
)
def test_a_malformed_s3_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        open_blob_store(url, Path("never-used"))


def test_a_missing_bucket_is_a_storage_error(s3_server: MotoS3) -> None:
    with pytest.raises(StorageError, match="bucket does not exist"):
        open_blob_store("s3://no-such-bucket-here", Path("never-used"))


def test_an_unreachable_endpoint_is_a_storage_error(
    s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageError, match="cannot open the media store"):
        open_blob_store("s3://some-bucket", Path("never-used"))


@pytest.mark.parametrize("endpoint", ["notaurl", "http://[bad"])
def test_a_malformed_endpoint_is_one_line_of_error(
    s3_server: MotoS3, home: Path, endpoint: str
) -> None:
    result = run(home, "--media", "s3://some-bucket", "doctor", env={"AWS_ENDPOINT_URL": endpoint})
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot open the media store s3://some-bucket: ")
    assert "AWS_ENDPOINT_URL" in result.stderr and "unexpected" not in result.stderr


def test_no_credentials_is_a_storage_error(
    s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="no S3 credentials"):
        open_blob_store("s3://some-bucket", Path("never-used"))


def test_the_cli_says_what_is_wrong_with_the_bucket_in_one_line(
    s3_server: MotoS3, home: Path
) -> None:
    result = run(home, "--media", "s3://no-such-bucket-here", "doctor")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: cannot open the media store")
    assert "Traceback" not in result.stderr


def library_on(home: Path, bucket: str) -> Taskerino:
    return Taskerino.open(home, media=f"s3://{bucket}/lib")


def test_doctor_finds_orphan_and_missing_objects(
    s3_server: MotoS3, s3_bucket: str, home: Path, tmp_path: Path
) -> None:
    with library_on(home, s3_bucket) as library:
        assert library.doctor() == []
        media = MediaLibrary(
            open_store(f"sqlite:{home / 'taskerino.db'}", Path()), S3BlobStore(s3_bucket, "lib")
        )
        kept_path, _ = source(tmp_path, b"an attachment", "kept.bin")
        media.ingest(kept_path, "file", "kept.bin")
        gone_path, gone = source(tmp_path, b"its object will vanish", "gone.bin")
        media.ingest(gone_path, "file", "gone.bin")
        assert library.doctor() == []
        # An object no row claims, written by someone outside the protocol ...
        stray_path, stray = source(tmp_path, b"nobody's", "stray.bin")
        S3BlobStore(s3_bucket, "lib").put_file(stray_path, stray)
        # ... and a row whose object was deleted behind the library's back.
        s3_server.client().delete_object(Bucket=s3_bucket, Key=f"lib/{gone[:2]}/{gone}")
        assert sorted(library.doctor()) == [
            f"missing file: attachment with hash {gone} has no blob",
            f"orphan file: blob {stray} has no attachment row",
        ]
        media.store.close()


def test_doctor_finds_damaged_objects(
    s3_server: MotoS3, s3_bucket: str, home: Path, tmp_path: Path
) -> None:
    with library_on(home, s3_bucket) as library:
        media = MediaLibrary(
            open_store(f"sqlite:{home / 'taskerino.db'}", Path()), S3BlobStore(s3_bucket, "lib")
        )
        short_path, short = source(tmp_path, b"twelve bytes", "short.bin")
        short_id = media.ingest(short_path, "file", "short.bin").id
        same_path, same = source(tmp_path, b"same size", "same.bin")
        same_id = media.ingest(same_path, "file", "same.bin").id
        media.store.close()
        client = s3_server.client()
        # Objects changed behind the library's back: one cut short, one same-sized.
        client.put_object(Bucket=s3_bucket, Key=f"lib/{short[:2]}/{short}", Body=b"twelve")
        client.put_object(Bucket=s3_bucket, Key=f"lib/{same[:2]}/{same}", Body=b"SAME SIZE")
        assert library.doctor() == [
            f"damaged file: attachment {short_id} (short.bin) is 6 bytes, expected 12"
        ]
        assert sorted(library.doctor(deep=True)) == sorted(
            [
                f"damaged file: attachment {short_id} (short.bin) is 6 bytes, expected 12",
                f"damaged file: attachment {same_id} (same.bin) does not match its SHA-256",
            ]
        )


def test_a_dead_writers_object_is_swept_by_the_next_open(
    s3_server: MotoS3, s3_bucket: str, home: Path, tmp_path: Path
) -> None:
    """The blob-intent protocol over S3: a writer that died between its upload and its
    row leaves an object whose intent names it; the next open (any process) deletes it."""
    with library_on(home, s3_bucket):
        pass
    store = open_store(f"sqlite:{home / 'taskerino.db'}", Path())
    blobs = S3BlobStore(s3_bucket, "lib")
    path, digest = source(tmp_path, b"uploaded, never committed")
    dead = ProcessOwner(socket.gethostname(), DEAD_PID, "1")
    store.add_blob_intent(BlobIntent(digest, dead))
    blobs.put_file(path, digest)
    # A committed one beside it stays.
    kept_path, kept = source(tmp_path, b"committed", "kept.bin")
    MediaLibrary(store, blobs).ingest(kept_path, "file", "kept.bin")
    store.close()
    with library_on(home, s3_bucket) as library:
        assert not blobs.exists(digest)
        assert blobs.exists(kept)
        assert library.doctor() == []


def test_an_attachment_row_is_added_only_after_its_object_is_stored(
    s3_bucket: str, home: Path, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:{home / 'taskerino.db'}", Path())
    blobs = S3BlobStore(s3_bucket)
    media = MediaLibrary(store, blobs)
    path, digest = source(tmp_path, b"bytes")
    staged = media.stage(path, "file", "a.bin")
    assert blobs.exists(digest) and store.attachment_by_hash(digest) is None
    committed: Attachment = media.commit(staged)
    assert store.attachment_by_hash(digest) == committed
    assert store.blob_intents() == []
    store.close()


def test_a_recorder_that_died_on_another_machine_leaves_no_orphan_object(
    s3_bucket: str, home: Path, tmp_path: Path
) -> None:
    """Its heartbeat went stale: this machine's recovery marks its session interrupted with
    what it committed, and deletes the object it uploaded but never committed."""
    with library_on(home, s3_bucket):
        pass
    store = open_store(f"sqlite:{home / 'taskerino.db'}", Path())
    blobs = S3BlobStore(s3_bucket, "lib")
    elsewhere = ProcessOwner("another-machine", 4242, "77")
    session = Session(id=new_id(), name="elsewhere", start_time=utc_now())
    with store.transaction():
        store.create_session(session)
        store.set_recorder(session.id, elsewhere)
        store.heartbeat(session.id, time.time() - 2 * HEARTBEAT_STALE)
    shot_path, _ = source(tmp_path, b"a screenshot it uploaded and committed", "shot.webp")

    def add_row(attachment: Attachment) -> None:
        store.add_screenshot(
            SessionScreenshot(
                id=new_id(),
                session_id=session.id,
                timestamp=utc_now(),
                media_offset=1.0,
                attachment_id=attachment.id,
                hash=attachment.hash,
            )
        )

    MediaLibrary(store, blobs).ingest(shot_path, "image", "shot.webp", then=add_row)
    path, digest = source(tmp_path, b"uploaded, never committed")
    store.add_blob_intent(BlobIntent(digest, elsewhere))
    blobs.put_file(path, digest)
    store.close()

    with library_on(home, s3_bucket) as library:
        recovered = library.get(session.id)
        assert recovered.status == "interrupted"
        assert len(recovered.screenshots) == 1
        assert blobs.exists(recovered.screenshots[0].hash)
        assert not blobs.exists(digest)
        assert library.doctor() == []


def test_without_boto3_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "taskerino.store.s3")
    with pytest.raises(InvalidInput, match=r"pip install 'taskerino\[team\]'"):
        open_blob_store("s3://some-bucket", Path("never-used"))
