"""The activity track and the enrichment stages' results in PostgreSQL (the
`EnrichmentRows` part). Writing these tables keeps the search index in step through the
triggers of `_schema`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from ...errors import InvalidInput, NotFound
from ...models import (
    STAGE_STATES,
    TRANSCRIPT_SOURCES,
    ActivityEvent,
    OcrText,
    StageState,
    TranscriptLine,
    VideoChapter,
    utc_now,
)
from ..base import EnrichmentRows
from ..sqlite._enrichment import _STAGE, _belongs, decode_words, encode_words
from ._connection import PostgresBase, Ref

# Every column that references an attachment: an attachment none of them names is unused.
_UNREFERENCED = """NOT EXISTS (SELECT 1 FROM screenshots WHERE attachment_id = {a})
  AND NOT EXISTS (SELECT 1 FROM audio_segments WHERE attachment_id = {a})
  AND NOT EXISTS (SELECT 1 FROM videos WHERE full_video_attachment_id = {a})
  AND NOT EXISTS (SELECT 1 FROM sessions WHERE audio_attachment_id = {a})
  AND NOT EXISTS (SELECT 1 FROM video_chunks WHERE attachment_id = {a})
  AND NOT EXISTS (SELECT 1 FROM video_chapters WHERE thumbnail_attachment_id = {a})"""


def unreferenced(column: str) -> str:
    """An SQL condition: the attachment whose id is in `column` is referenced by no row."""
    return _UNREFERENCED.format(a=column)


def load_activity(db: psycopg.Connection[Any], session_id: str) -> list[ActivityEvent]:
    return [
        ActivityEvent(*r)
        for r in db.execute(
            "SELECT id, session_id, timestamp, media_offset, app, title FROM activity"
            " WHERE session_id=%s ORDER BY media_offset, seq",
            (session_id,),
        ).fetchall()
    ]


def load_transcript(db: psycopg.Connection[Any], session_id: str) -> list[TranscriptLine]:
    return [
        TranscriptLine(*r)
        for r in db.execute(
            "SELECT id, session_id, start_offset, end_offset, text, source FROM transcript_lines"
            " WHERE session_id=%s ORDER BY start_offset, seq",
            (session_id,),
        ).fetchall()
    ]


def load_ocr(db: psycopg.Connection[Any], session_id: str, *, words: bool) -> list[OcrText]:
    # Word boxes are most of an OCR row's bytes: not even read unless asked for.
    column = "words" if words else "'[]'"
    return [
        OcrText(r[0], r[1], r[2], r[3], r[4], decode_words(r[5]))
        for r in db.execute(
            f"SELECT id, session_id, media_offset, screenshot_id, text, {column} FROM ocr_texts"
            " WHERE session_id=%s ORDER BY media_offset, seq",
            (session_id,),
        ).fetchall()
    ]


def load_chapters(db: psycopg.Connection[Any], session_id: str) -> list[VideoChapter]:
    chapters = []
    for r in db.execute(
        "SELECT id, session_id, start_offset, end_offset, title, summary, key_topics,"
        " thumbnail_attachment_id, confidence FROM video_chapters"
        " WHERE session_id=%s ORDER BY start_offset, seq",
        (session_id,),
    ).fetchall():
        topics = json.loads(r[6])
        if not isinstance(topics, list):
            raise ValueError(f"expected a JSON list of key topics, found {r[6][:40]!r}")
        chapters.append(VideoChapter(r[0], r[1], r[2], r[3], r[4], r[5], topics, r[7], r[8]))
    return chapters


class PostgresEnrichmentRows(PostgresBase, EnrichmentRows):
    def add_activity(self, event: ActivityEvent) -> None:
        e = event
        self._write(
            "INSERT INTO activity (id, session_id, timestamp, media_offset, app, title)"
            " VALUES (%s,%s,%s,%s,%s,%s)",
            (e.id, e.session_id, e.timestamp, e.media_offset, e.app, e.title),
            [("sessions", e.session_id, "session")],
        )

    def _require_session(self, session_id: str, *, video: bool = False) -> None:
        """NotFound unless the session exists (and has a video, with `video`); locks its
        row for the open transaction so that two stages of one session replace in turn."""
        rows = self._write_returning(
            "SELECT EXISTS (SELECT 1 FROM videos WHERE session_id = s.id) FROM sessions s"
            " WHERE s.id=%s FOR UPDATE",
            (session_id,),
        )
        if not rows:
            raise NotFound(f"no session {session_id!r}")
        if video and not rows[0][0]:
            raise NotFound(f"no video in session {session_id!r}: chapters belong to a video")

    def replace_ocr(self, session_id: str, texts: Sequence[OcrText]) -> None:
        _belongs(session_id, texts, "OCR text")
        rows = [
            (t.id, t.session_id, t.media_offset, t.screenshot_id, t.text, encode_words(t.words))
            for t in texts
        ]
        shots = {t.screenshot_id for t in texts if t.screenshot_id is not None}
        refs: list[Ref] = [("screenshots", s, "screenshot") for s in sorted(shots)]
        with self.transaction():
            self._require_session(session_id)
            self._write("DELETE FROM ocr_texts WHERE session_id=%s", (session_id,))
            self._write_many(
                "INSERT INTO ocr_texts (id, session_id, media_offset, screenshot_id, text, words)"
                " VALUES (%s,%s,%s,%s,%s,%s)",
                rows,
                refs,
            )

    def ocr_for(self, session_id: str) -> list[OcrText]:
        with self._reading(snapshot=True) as db:
            found = db.execute("SELECT 1 FROM sessions WHERE id=%s", (session_id,)).fetchone()
            if found is None:
                raise NotFound(f"no session {session_id!r}")
            return load_ocr(db, session_id, words=True)

    def replace_transcript(self, session_id: str, lines: Sequence[TranscriptLine]) -> None:
        _belongs(session_id, lines, "transcript line")
        for line in lines:
            if line.source not in TRANSCRIPT_SOURCES:
                raise InvalidInput(
                    f"transcript line {line.id!r} has source {line.source!r}: "
                    f"allowed are {', '.join(TRANSCRIPT_SOURCES)}"
                )
            if line.end_offset < line.start_offset:
                raise InvalidInput(
                    f"transcript line {line.id!r} ends ({line.end_offset}) before it starts "
                    f"({line.start_offset})"
                )
        rows = [(x.id, x.session_id, x.start_offset, x.end_offset, x.text, x.source) for x in lines]
        with self.transaction():
            self._require_session(session_id)
            self._write("DELETE FROM transcript_lines WHERE session_id=%s", (session_id,))
            self._write_many(
                "INSERT INTO transcript_lines (id, session_id, start_offset, end_offset, text,"
                " source) VALUES (%s,%s,%s,%s,%s,%s)",
                rows,
            )

    def replace_chapters(self, session_id: str, chapters: Sequence[VideoChapter]) -> list[str]:
        _belongs(session_id, chapters, "chapter")
        rows = [
            (
                c.id,
                c.session_id,
                c.start_offset,
                c.end_offset,
                c.title,
                c.summary,
                json.dumps(c.key_topics, ensure_ascii=False),
                c.thumbnail_attachment_id,
                c.confidence,
            )
            for c in chapters
        ]
        thumbnails = {c.thumbnail_attachment_id for c in chapters if c.thumbnail_attachment_id}
        refs: list[Ref] = [("attachments", a, "attachment") for a in sorted(thumbnails)]
        with self.transaction():
            self._require_session(session_id, video=True)
            old = [
                r[0]
                for r in self._write_returning(
                    "DELETE FROM video_chapters WHERE session_id=%s"
                    " RETURNING thumbnail_attachment_id",
                    (session_id,),
                )
                if r[0] is not None
            ]
            self._write_many(
                "INSERT INTO video_chapters (id, session_id, start_offset, end_offset, title,"
                " summary, key_topics, thumbnail_attachment_id, confidence)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                rows,
                refs,
            )
            unused = [
                r[0]
                for r in self._write_returning(
                    "SELECT id FROM attachments WHERE id = ANY(%s)"
                    f" AND {unreferenced('attachments.id')} ORDER BY id",
                    (sorted(set(old)),),
                )
            ]
        return unused

    def set_stage_status(
        self, session_id: str, stage: str, status: StageState, error: str | None = None
    ) -> None:
        if not isinstance(stage, str) or not _STAGE.fullmatch(stage):
            raise InvalidInput(
                f"stage {stage!r} is not a stage name: lowercase letters, digits, - and _ "
                "(at most 64)"
            )
        if status not in STAGE_STATES:
            raise InvalidInput(f"stage status {status!r} is not one of {', '.join(STAGE_STATES)}")
        value = json.dumps({"status": status, "error": error, "updated_at": utc_now()})
        changed = self._write(
            "UPDATE sessions SET enrichment = jsonb_set(enrichment::jsonb, ARRAY[%s],"
            " %s::jsonb)::text WHERE id=%s",
            (stage, value, session_id),
        )
        if changed == 0:
            raise NotFound(f"no session {session_id!r}")
