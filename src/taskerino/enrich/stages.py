"""The enrichment stages of a session, as the worker runs them.

Each stage reads the session and its media, computes its results with the engines
(`ocr`, `transcribe`, `chapters`) outside any transaction, and returns a `commit` that
replaces the stage's whole output in the worker's transaction — so a stage run twice (a
worker killed half way) gives the same rows, never duplicates. The search index follows
the rows by itself (the store keeps it in step); the `index` stage checks it for the
session and rebuilds what is missing.

Order: a session that ends is queued for `ocr` and `transcribe`; `chapters` follows once
both are in (it votes on activity, visual change and their vocabulary); `index` follows
the chapters.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import EnrichmentError
from ..models import (
    Attachment,
    Job,
    OcrText,
    OcrWord,
    Session,
    TranscriptLine,
    TranscriptSource,
    VideoChapter,
    new_id,
    on_timeline,
)
from ..store.base import Store
from ..store.media import MediaLibrary
from .worker import Commit

log = logging.getLogger("taskerino.enrich")

MODEL_ENV = "TASKERINO_WHISPER_MODEL"  # a faster-whisper model name or folder


@dataclass
class StageSettings:
    """What a person may tune; the defaults suit a work session on a 1080p screen."""

    # Cores one stage may use: all of them. The worker runs OCR and transcription at once,
    # and whichever ends first would otherwise leave its core idle while the other stage
    # (most often OCR, the longer one) goes on alone.
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    model: str | None = None  # speech model: default the packaged tiny English one
    key_frame_interval: float = 1.0  # seconds between looks at the video
    key_frame_min_change: float = 0.01  # share of pixels that must change
    key_frame_max_gap: float = 10.0  # a picture that keeps changing is read this often

    @classmethod
    def from_environment(cls) -> StageSettings:
        return cls(model=os.environ.get(MODEL_ENV) or None)


class Stages:
    """The stages over one library's store and media (one per worker)."""

    def __init__(
        self, store: Store, media: MediaLibrary, settings: StageSettings | None = None
    ) -> None:
        self.store = store
        self.media = media
        self.settings = settings or StageSettings.from_environment()
        self._ocr_engine: Any = None
        self._transcriber: Any = None
        self._unused: list[str] = []  # thumbnails the last chapters commit let go
        self._lock = threading.Lock()

    def runners(self) -> dict[str, Callable[[Job], Commit]]:
        return {
            "ocr": self.ocr,
            "transcribe": self.transcribe,
            "chapters": self.chapters,
            "index": self.index,
        }

    def follow_ups(self, job: Job) -> list[str]:
        """Stages to queue once `job` is done (called inside its completing transaction)."""
        if job.kind == "chapters":
            return ["index"]
        if job.kind in ("ocr", "transcribe"):
            other = "transcribe" if job.kind == "ocr" else "ocr"
            status = self.store.get_session(job.session_id).enrichment.get(other)
            if status is None or status.status in ("done", "failed"):
                return ["chapters"]
        return []

    # --- ocr ------------------------------------------------------------------------------
    def ocr(self, job: Job) -> Commit:
        """Tesseract over every screenshot and over the video's key frames."""
        from .ocr import OcrEngine, key_frames

        session = self.store.get_session(job.session_id)
        with self._lock:
            if self._ocr_engine is None:
                self._ocr_engine = OcrEngine()
        engine = self._ocr_engine
        pictures: list[tuple[float, str | None, Callable[[], Any]]] = []
        by_hash: dict[str, list[tuple[float, str]]] = {}
        for shot in session.screenshots:
            # The same picture (a still screen) is read once, however often it was taken.
            by_hash.setdefault(shot.hash, []).append((shot.media_offset, shot.id))
        results: list[OcrText] = []

        def read(item: tuple[float, str | None, Callable[[], Any]]) -> tuple[Any, Any]:
            return item, engine.read(item[2]())

        threads = max(1, self.settings.threads)
        with self._media_files() as local, ThreadPoolExecutor(threads) as pool:
            for digest, shots in by_hash.items():
                attachment = self.store.attachment_by_hash(digest)
                if attachment is not None:
                    pictures.append((shots[0][0], digest, _reader(local(attachment))))
            video = self._video_path(session, local)
            for (_, digest, _load), found in _bounded_map(pool, read, pictures, 2 * threads):
                if digest is None or not found.text.strip():
                    continue
                for offset, shot_id in by_hash[digest]:
                    results.append(_ocr_text(session.id, offset, shot_id, found))
            if video is not None:
                frames = key_frames(
                    video,
                    min_change=self.settings.key_frame_min_change,
                    max_gap=self.settings.key_frame_max_gap,
                    interval=self.settings.key_frame_interval,
                )
                # Key frames are decoded in this thread while the pool reads earlier ones;
                # only a few wait at a time (a 1080p frame is 6 MB).
                jobs = ((offset, None, functools.partial(_same, frame)) for offset, frame in frames)
                for (offset, _, _), found in _bounded_map(pool, read, jobs, 2 * threads):
                    if found.text.strip():
                        results.append(_ocr_text(session.id, offset, None, found))
        results.sort(key=lambda r: (r.media_offset, r.screenshot_id or ""))

        def commit() -> None:
            self.store.replace_ocr(session.id, results)

        return commit

    # --- transcribe -----------------------------------------------------------------------
    def transcribe(self, job: Job) -> Commit:
        """faster-whisper over the session's joined audio, by recording stretch."""
        session = self.store.get_session(job.session_id)
        lines: list[TranscriptLine] = []
        with self._media_files() as local:
            self._transcribe(session, self._audio_path(session, local), lines)

        def commit() -> None:
            self.store.replace_transcript(session.id, [line for line in lines if line.text])

        return commit

    def _transcribe(self, session: Session, path: Path | None, lines: list[TranscriptLine]) -> None:
        from .transcribe import AudioTimeline, Transcriber

        if path is not None and session.audio_segments:
            segments = sorted(session.audio_segments, key=lambda s: s.media_offset)
            timeline = AudioTimeline([(s.media_offset, s.duration) for s in segments])
            with self._lock:
                if self._transcriber is None:
                    self._transcriber = Transcriber(
                        self.settings.model, cpu_threads=max(1, self.settings.threads)
                    )
                transcriber = self._transcriber
            source = _audio_source(session)
            for piece in transcriber.transcribe(path, spans=_stretches(segments)):
                mapped = timeline.piece(piece)
                lines.append(
                    TranscriptLine(
                        id=new_id(),
                        session_id=session.id,
                        start_offset=on_timeline(mapped.start),
                        end_offset=on_timeline(mapped.end),
                        text=mapped.text.strip(),
                        source=source,
                    )
                )

    # --- chapters -------------------------------------------------------------------------
    def chapters(self, job: Job) -> Commit:
        """Chapters voted from activity, visual change and vocabulary; titles by TF-IDF."""
        from .chapters import Activity, ChapterParams, TextAt, draft_chapters
        from .transcribe import TranscriptPiece

        session = self.store.get_session(job.session_id)
        duration = session.total_duration or 0.0
        video_ocr = [o for o in session.ocr if o.screenshot_id is None]
        drafts = draft_chapters(
            duration,
            activity=[Activity(a.media_offset, a.app, a.title) for a in session.activity],
            # A key frame is where the picture changed and settled: the visual signal.
            visual=[(o.media_offset, 1.0) for o in video_ocr],
            ocr=[TextAt(o.media_offset, o.text) for o in session.ocr],
            transcript=[
                TranscriptPiece(t.start_offset, t.end_offset, t.text) for t in session.transcript
            ],
            params=ChapterParams(min_length=max(5.0, min(60.0, duration / 4))),
        )
        thumbnails = self._thumbnails(session, [d.thumbnail_offset for d in drafts])
        chapters = [
            VideoChapter(
                id=new_id(),
                session_id=session.id,
                start_offset=on_timeline(d.start_offset),
                end_offset=on_timeline(d.end_offset),
                title=d.title,
                summary=d.summary,
                key_topics=list(d.key_topics),
                confidence=round(d.confidence, 3),
            )
            for d in drafts
        ]

        def commit() -> None:
            for chapter, thumbnail in zip(chapters, thumbnails, strict=True):
                if thumbnail is not None:
                    chapter.thumbnail_attachment_id = thumbnail()
            if session.video is not None:
                self._unused.extend(self.store.replace_chapters(session.id, chapters))

        return commit

    def after_commit(self, job: Job) -> None:
        """Once a job's transaction committed: delete the thumbnails no chapter uses any
        more (row and blob, without ever leaving an orphan)."""
        if job.kind == "chapters" and self._unused:
            unused, self._unused = self._unused, []
            self.media.discard(unused)

    def _thumbnails(self, session: Session, offsets: list[float]) -> list[Callable[[], str] | None]:
        """For each offset, what attaches a frame of the video in the commit (staged now,
        committed with the chapters: never an orphan)."""
        from ..recording.screenshots import encode_image
        from .ocr import frame_at

        staged: list[Callable[[], str] | None] = []
        with (
            self._media_files() as local,
            tempfile.TemporaryDirectory(prefix="chapters-") as folder,
        ):
            video = self._video_path(session, local)
            if video is None:
                return [None for _ in offsets]
            for i, offset in enumerate(offsets):
                frame = frame_at(video, offset)
                if frame is None:
                    staged.append(None)
                    continue
                path = Path(folder) / f"chapter-{i}.webp"
                width, height = encode_image(frame, path, max_size=(480, 270))
                attachment = self.media.stage(
                    path, "image", f"chapter-{i + 1}.webp", width=width, height=height, move=True
                )
                staged.append(functools.partial(self._commit_id, attachment))
        return staged

    def _commit_id(self, staged: Attachment) -> str:
        return self.media.commit(staged).id

    # --- index ----------------------------------------------------------------------------
    def index(self, job: Job) -> Commit:
        """The search index is kept in step by the store; make sure it is for this session."""

        def commit() -> None:
            self.store.reindex_session(job.session_id)

        return commit

    # --- media ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _media_files(self) -> Iterator[Callable[[Attachment], Path]]:
        """A local file for an attachment: where the blob store keeps it, or (a remote
        blob store, S3) downloaded into a scratch folder that goes when the block ends."""
        with tempfile.TemporaryDirectory(prefix="taskerino-media-") as folder:
            yield lambda attachment: self.media.fetch(attachment, Path(folder))

    def _video_path(self, session: Session, local: Callable[[Attachment], Path]) -> Path | None:
        video = session.video
        if video is None or video.full_video_attachment_id is None:
            return None
        return local(self.store.get_attachment(video.full_video_attachment_id))

    def _audio_path(self, session: Session, local: Callable[[Attachment], Path]) -> Path | None:
        if session.audio_attachment_id is None:
            return None
        return local(self.store.get_attachment(session.audio_attachment_id))


T = TypeVar("T")
R = TypeVar("R")


def _bounded_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """`pool.map`, in order, with at most `window` items taken from `items` and not yet
    returned: a generator of big frames is not read ahead whole."""
    pending: collections.deque[Future[R]] = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _same(value: T) -> T:
    return value


def _reader(path: Path) -> Callable[[], Any]:
    def load() -> Any:
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise EnrichmentError(f"cannot read the picture {path.name}")
        return image

    return load


def _ocr_text(session_id: str, offset: float, screenshot_id: str | None, found: Any) -> OcrText:
    return OcrText(
        id=new_id(),
        session_id=session_id,
        media_offset=on_timeline(offset),
        screenshot_id=screenshot_id,
        text=found.text.strip(),
        words=[OcrWord(w.text, w.x, w.y, w.w, w.h) for w in found.words],
    )


def _audio_source(session: Session) -> TranscriptSource:
    mic, system = session.config.audio, session.config.system_audio
    # Microphone and system audio are mixed into one track while recording, so each word
    # is heard once: there is nothing to deduplicate, only to label.
    return "mixed" if mic and system else ("system" if system else "mic")


def _stretches(segments: list[Any]) -> list[tuple[float, float]]:
    """File-time spans of the joined audio between pauses: whole utterances stay whole."""
    spans: list[tuple[float, float]] = []
    position = 0.0
    expected = None
    for segment in segments:
        if expected is not None and math.isclose(segment.media_offset, expected, abs_tol=0.05):
            spans[-1] = (spans[-1][0], position + segment.duration)
        else:
            spans.append((position, position + segment.duration))
        position += segment.duration
        expected = segment.media_offset + segment.duration
    return spans
