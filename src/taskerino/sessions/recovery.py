"""Recovery of sessions whose recorder died, the disk reserve, and `doctor`.

On every open of a store, sessions marked active/paused whose recorder is gone are
claimed (one process salvages each), what they wrote is attached, and they are marked
`interrupted`. Nothing a dead recorder wrote stays unreferenced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from ..config import RESERVE_BYTES, Layout
from ..errors import StorageError, TaskerinoError
from ..models import Session, on_timeline, utc_iso, utc_now
from ..process import ProcessOwner, current_owner
from ..recording.base import Finisher
from ..recording.live import RecordingRegistry
from ..store.base import BlobStore, LiveSession, Store
from ..store.media import MediaLibrary, sha256_file
from .lifecycle import OWNER_FILE, queue_enrichment, seconds_between

log = logging.getLogger("taskerino.recovery")


class Recovery:
    def __init__(
        self, layout: Layout, store: Store, media: MediaLibrary, registry: RecordingRegistry
    ) -> None:
        self.layout = layout
        self.store = store
        self.media = media
        self.registry = registry
        # Sessions whose salvage could not finish (disk full, damaged file): why, by id.
        self.unfinished: dict[str, str] = {}

    def alive(self, live: LiveSession) -> bool:
        """Is the session's recorder alive: in this process, or by the one rule of
        `ProcessOwner.is_alive`."""
        if self.registry.find(live.id) is not None:
            return True
        return live.owner is not None and live.owner.is_alive(live.heartbeat)

    def recorder_alive(self, session_id: str) -> bool:
        return any(s.id == session_id and self.alive(s) for s in self.store.live_sessions())

    def recover(self) -> list[str]:
        """Mark sessions whose recorder died `interrupted`, with what they wrote attached.

        Recovery that cannot finish (the disk is full, a file is damaged) is reported and
        left for the next open: it never keeps the library from being read.
        """
        done: list[str] = []
        me = current_owner()
        dead: set[ProcessOwner] = set()
        for live in self.store.live_sessions():
            if self.alive(live):
                continue
            if live.owner is not None:
                dead.add(live.owner)
            try:
                with self.store.transaction():
                    # Claim it: only one process salvages a session.
                    current = [s for s in self.store.live_sessions() if s.id == live.id]
                    if not current or current[0].owner != live.owner:
                        continue
                    self.store.set_recorder(live.id, me)
                self._salvage(live.id, live.heartbeat)
            except (TaskerinoError, OSError) as exc:
                self.unfinished[live.id] = str(exc)
                log.warning(
                    "could not recover session %s yet (%s): it stays %s, with its files "
                    "kept; recovery tries again next time",
                    live.id,
                    exc,
                    live.status,
                )
                continue
            self.unfinished.pop(live.id, None)
            done.append(live.id)
        try:
            # A dead recorder on another machine is known dead only by its stale
            # heartbeat: its blob intents are swept as a dead writer's all the same.
            self.media.sweep(dead)
            self._remove_dead_staging()
        except (TaskerinoError, OSError) as exc:
            log.warning("could not clean up after dead writers yet: %s", exc)
        return done

    def _remove_dead_staging(self) -> None:
        if not self.layout.staging.is_dir():
            return
        live_ids = {s.id for s in self.store.live_sessions()}
        for folder in self.layout.staging.iterdir():
            if folder.name not in live_ids and not _owner_alive(folder):
                shutil.rmtree(folder, ignore_errors=True)

    def _salvage(self, session_id: str, heartbeat: float | None) -> None:
        # Media code is only needed here.
        from ..recording.audio import salvage_audio
        from ..recording.screenshots import salvage_screenshots
        from ..recording.video import salvage_video

        staging = self.layout.staging / session_id
        session = self.store.get_session(session_id)
        # Screenshots still waiting for their upload are stored; half-written ones dropped.
        salvage_screenshots(session, staging / "screenshots", self.media)
        finishers: list[Finisher] = []
        audio_finisher, audio = salvage_audio(session, staging / "audio", self.media)
        if audio_finisher is not None:
            finishers.append(audio_finisher)
        video_finisher = salvage_video(session, staging / "video", self.media, audio)
        if video_finisher is not None:
            finishers.append(video_finisher)
        with self.store.transaction():
            session = self.store.session_for_update(session_id)
            last_alive = utc_now() if heartbeat is None else utc_iso(heartbeat)
            stop_at = session.paused_at or last_alive
            duration = max(0.0, seconds_between(session.start_time, stop_at) - session.total_paused)
            session.status, session.end_time, session.paused_at = "interrupted", last_alive, None
            session.total_duration = on_timeline(max(duration, _media_end(session)))
            for finish in finishers:
                finish(session)
            self.store.update_session(session)
            self.store.set_recorder(session_id, None)
            queue_enrichment(self.store, session_id)
            stats = self.store.read_stats(session_id)
            if stats is not None:
                stats.state = "stopped"
                self.store.write_stats(stats)
        shutil.rmtree(staging, ignore_errors=True)
        log.warning(
            "session %s was left by a recorder that died: marked interrupted, its media kept",
            session_id,
        )

    def keep_reserve(self) -> None:
        """Set aside disk space that ending a session can use when the disk is full."""
        reserve = self.layout.reserve
        if reserve.exists():
            return
        try:
            with reserve.open("wb") as f:
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
        except OSError:
            reserve.unlink(missing_ok=True)  # no room now: try again next time

    def doctor(self, deep: bool = False) -> list[str]:
        """Problems of the database and the media files: integrity, orphans, missing and
        damaged files (sizes always; contents against their SHA-256 when `deep`), and
        sessions left live without a recorder."""
        problems = self.store.integrity_problems()
        unreferenced, missing = self.media.orphans()
        problems += [f"orphan file: blob {h} has no attachment row" for h in unreferenced]
        problems += [f"missing file: attachment with hash {h} has no blob" for h in missing]
        problems += self._damaged(set(missing), deep)
        for live in self.store.live_sessions():
            if live.id in self.unfinished:
                problems.append(
                    f"session {live.id} could not be recovered yet: {self.unfinished[live.id]}"
                )
            elif not self.alive(live):
                problems.append(f"session {live.id} is {live.status} without a live recorder")
        return problems

    def _damaged(self, missing: set[str], deep: bool) -> list[str]:
        problems = []
        blobs = self.media.blobs
        # Remote objects' sizes come from one listing, not a request each.
        remote = blobs.sizes() if self.media.remote else {}
        for digest in sorted(self.store.attachment_hashes() - missing):
            attachment = self.store.attachment_by_hash(digest)
            if attachment is None:
                continue
            path = blobs.local_path(digest)
            label = f"attachment {attachment.id} ({attachment.name})"
            try:
                size = path.stat().st_size if path is not None else remote.get(digest)
                if size is None:
                    continue  # deleted since the listing: `orphans` reports it next time
                if size != attachment.size:
                    problems.append(
                        f"damaged file: {label} is {size} bytes, expected {attachment.size}"
                    )
                elif deep and _sha256_of(blobs, digest, path) != digest:
                    problems.append(f"damaged file: {label} does not match its SHA-256")
            except OSError as exc:
                problems.append(f"unreadable file: {label}: {exc.strerror or exc}")
            except StorageError as exc:
                problems.append(f"unreadable file: {label}: {exc}")
        return problems


def _sha256_of(blobs: BlobStore, digest: str, path: Path | None) -> str:
    if path is not None:
        return sha256_file(path)
    hashed = hashlib.sha256()
    with blobs.open(digest) as f:
        while block := f.read(1 << 20):
            hashed.update(block)
    return hashed.hexdigest()


def _media_end(session: Session) -> float:
    return max(
        [s.media_offset for s in session.screenshots]
        + [a.media_offset + a.duration for a in session.audio_segments]
        + [c.end_offset for c in (session.video.chunks if session.video else [])]
        + [0.0]
    )


def _owner_alive(staging: Path) -> bool:
    try:
        return ProcessOwner.decode((staging / OWNER_FILE).read_text()).is_alive()
    except (OSError, ValueError):
        return False
