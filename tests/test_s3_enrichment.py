"""A worker enriching a session whose media is in S3 (moto's server mode, the stand-in
for S3): it fetches the video, audio and screenshots from the bucket, and finds what it
finds from local files."""

from __future__ import annotations

from pathlib import Path

from taskerino.enrich.worker import WorkerConfig
from taskerino.sessions import Taskerino
from taskerino.store.base import Backoff
from taskerino.store.files import FolderBlobStore
from taskerino.store.s3 import S3BlobStore

from .enriched import Enriched
from .s3_server import MotoS3, object_keys
from .test_enrichment import results


def test_a_worker_enriches_a_session_whose_media_is_in_s3(
    s3_server: MotoS3, s3_bucket: str, enriched: Enriched, tmp_path: Path
) -> None:
    home = enriched.copy(tmp_path / "home")
    sid = enriched.session_id
    with Taskerino.open(home) as library:
        before = results(library, sid)
    # Every blob moves into the bucket: nothing is left on this disk to read.
    bucket = S3BlobStore(s3_bucket, "media")
    folder = FolderBlobStore(home / "blobs")
    for digest in list(folder.digests()):
        path = folder.local_path(digest)
        assert path is not None
        bucket.put_file(path, digest)
        folder.delete(digest)
    assert list(folder.digests()) == []

    with Taskerino.open(home, media=f"s3://{s3_bucket}/media") as library:
        library.enrich(sid)  # every stage again, from the bucket's media
        config = WorkerConfig(lease_seconds=30, max_attempts=3, backoff=Backoff(base=0.1))
        library.worker(1, config).run(drain=True)
        session = library.get(sid)
        assert all(st.status == "done" for st in session.enrichment.values()), session.enrichment
        assert results(library, sid) == before
        assert session.video is not None
        assert all(c.thumbnail_attachment_id for c in session.video.chapters)
        assert library.doctor() == []
    assert list(folder.digests()) == [], "the new chapter thumbnails went to the bucket"
    assert len(object_keys(s3_server.client(), s3_bucket)) >= 4
