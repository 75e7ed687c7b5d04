"""Putting media files into the blob store without ever leaving an orphan.

The protocol: commit a blob intent (hash, owner), write the blob (temp, fsync, rename),
then commit the attachment row and drop the intent in one transaction, together with the
caller's own rows. A crash at any point leaves either nothing, or a blob whose intent
names a dead owner: recovery deletes it unless an attachment row claims it.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import shutil
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Literal

from ..models import Attachment, AttachmentType, new_id
from ..process import ProcessOwner, current_owner
from .base import BlobIntent, BlobStore, Store

log = logging.getLogger("taskerino.media")

_MIME = {
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".mp4": "video/mp4",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class MediaLibrary:
    """The store and the blob store used together."""

    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs

    def stage(
        self,
        path: Path,
        type: AttachmentType,
        name: str,
        *,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        move: bool = False,
    ) -> Attachment:
        """Put the bytes of `path` in the blob store under a committed intent.

        The returned attachment is not yet in the store: `commit` it inside the caller's
        transaction. Until then recovery may delete the blob if this process dies. With
        `move`, `path` is consumed.
        """
        digest = sha256_file(path)
        existing = self.store.attachment_by_hash(digest)
        if existing is not None and self.blobs.exists(digest):
            if move:
                path.unlink(missing_ok=True)
            return existing
        self.store.add_blob_intent(BlobIntent(digest, current_owner()))
        size = self.blobs.put_file(path, digest, move=move)
        mime = _MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
        return Attachment(
            id=new_id(),
            type=type,
            name=name,
            mime_type=mime or "application/octet-stream",
            size=size,
            hash=digest,
            duration=duration,
            width=width,
            height=height,
        )

    def commit(self, staged: Attachment) -> Attachment:
        """Add a staged attachment's row (in the caller's transaction); returns the row kept."""
        with self.store.transaction():
            attachment = self.store.add_attachment(staged)
            self.store.remove_blob_intent(staged.hash, current_owner())
        return attachment

    def ingest(
        self,
        path: Path,
        type: AttachmentType,
        name: str,
        *,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        then: Callable[[Attachment], None] | None = None,
        source: Literal["keep", "delete"] = "delete",
    ) -> Attachment:
        """Store `path` as an attachment (deduplicated by content) and run `then` with it
        in the transaction that commits the attachment row."""
        # Copied, not moved: until the row commits, the original is what recovery salvages.
        staged = self.stage(path, type, name, duration=duration, width=width, height=height)
        with self.store.transaction():
            attachment = self.commit(staged)
            if then is not None:
                then(attachment)
        if source == "delete":
            path.unlink(missing_ok=True)
        return attachment

    def discard(self, attachment_ids: Iterable[str]) -> list[str]:
        """Delete attachments that no row references any more, row and blob (the thumbnails
        `Store.replace_chapters` returns); still referenced or unknown ones are left alone.
        Returns the hashes deleted.

        Call it after the transaction that stopped referencing them committed, never inside
        it: a rollback would bring back rows whose blobs are gone. Each row goes in a
        transaction that also commits an intent on its blob, held until the blob is deleted,
        so a crash in between leaves a blob that recovery deletes (its intent names a dead
        owner and no row claims it), never an orphan.
        """
        removed = []
        for attachment_id in attachment_ids:
            with self.store.transaction():
                released = self.release([attachment_id])
            removed += self.drop(released)
        return removed

    def release(self, attachment_ids: Iterable[str]) -> list[Attachment]:
        """Inside the caller's transaction: delete the rows of the attachments that no row
        references any more, each with an intent on its blob; the attachments deleted.
        After the transaction commits, hand them to `drop`. A crash before `drop` leaves
        blobs whose intents name a dead owner and that no row claims: recovery deletes
        them, so no file is ever orphaned and no row ever lacks its file."""
        me = current_owner()
        released = []
        with self.store.transaction():
            for attachment_id in attachment_ids:
                attachment = self.store.delete_attachment(attachment_id)
                if attachment is not None:
                    self.store.add_blob_intent(BlobIntent(attachment.hash, me))
                    released.append(attachment)
        return released

    def drop(self, released: Iterable[Attachment]) -> list[str]:
        """Delete the blobs of attachments `release` deleted (after its transaction
        committed), then their intents; the hashes deleted."""
        me = current_owner()
        removed = []
        for attachment in released:
            self.blobs.delete(attachment.hash)
            self.store.remove_blob_intent(attachment.hash, me)
            removed.append(attachment.hash)
        return removed

    def local_path(self, attachment: Attachment) -> Path | None:
        return self.blobs.local_path(attachment.hash)

    @property
    def remote(self) -> bool:
        """Whether the blob store keeps its bytes off this machine (S3): then media to
        work on (joining chunks, salvage) must be kept or fetched as local files."""
        return self.blobs.local_path("0" * 64) is None

    def fetch(self, attachment: Attachment, folder: Path) -> Path:
        """A local file with the attachment's bytes: where the blob store keeps them on
        this disk, else downloaded into `folder` (named by its hash; the caller removes it)."""
        path = self.local_path(attachment)
        if path is not None:
            return path
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / attachment.hash
        if target.is_file() and target.stat().st_size == attachment.size:
            return target
        partial = folder / f"{attachment.hash}.part"
        with self.blobs.open(attachment.hash) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        partial.replace(target)
        return target

    def sweep(self, dead_owners: Collection[ProcessOwner] = ()) -> list[str]:
        """Remove what dead writers left: temp files, and blobs of intents never committed.

        A writer is dead by `ProcessOwner.is_alive`, or when it is in `dead_owners` (a
        recorder on another machine whose heartbeat went stale)."""
        removed = self.blobs.remove_stale_temp()
        dead = [
            i for i in self.store.blob_intents() if i.owner in dead_owners or not i.owner.is_alive()
        ]
        for intent in dead:
            if self.store.attachment_by_hash(intent.hash) is None:
                self.blobs.delete(intent.hash)
                removed.append(intent.hash)
            self.store.remove_blob_intent(intent.hash, intent.owner)
        if removed:
            log.warning("removed %d file(s) left by an interrupted write", len(removed))
        return removed

    def orphans(self) -> tuple[list[str], list[str]]:
        """(blobs no attachment row references, attachment rows whose blob is missing),
        leaving out writes that a live process has in flight."""
        # This order matters: a blob's intent is committed before its bytes appear, and its
        # attachment row before its intent goes, so nothing in flight is missed.
        stored = set(self.blobs.digests())
        in_flight = {i.hash for i in self.store.blob_intents() if i.owner.is_alive()}
        claimed = self.store.attachment_hashes()
        unreferenced = sorted(stored - claimed - in_flight)
        missing = sorted(claimed - stored)
        return unreferenced, missing
