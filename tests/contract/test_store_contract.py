"""The Store contract (see `taskerino.store.base`), run against every back end in conftest."""

from __future__ import annotations

import multiprocessing
import random
import string
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import count
from queue import Queue
from typing import Any

import pytest

from taskerino.errors import InvalidInput, LeaseLost, NotFound, StorageError
from taskerino.models import (
    ActivityEvent,
    Attachment,
    ContextItem,
    OcrText,
    OcrWord,
    RecordingStats,
    RecycledMedia,
    SearchHit,
    Session,
    SessionAudioSegment,
    SessionConfig,
    SessionFilter,
    SessionScreenshot,
    SessionVideo,
    SessionVideoChunk,
    StageStatus,
    TranscriptLine,
    VideoChapter,
    new_id,
    parse_time,
    utc_now,
)
from taskerino.process import ProcessOwner, current_owner
from taskerino.store import Store
from taskerino.store.base import Backoff, BlobIntent, SessionRows
from taskerino.store.watch import Topic

from .conftest import StoreBackend

_digests = count(1)


def digest() -> str:
    """A new, valid SHA-256-shaped digest."""
    return f"{next(_digests):064x}"


def make_session(name: str = "s", start: str = "2026-01-01T00:00:00.000Z") -> Session:
    return Session(id=new_id(), name=name, start_time=start)


def make_attachment(hash: str | None = None) -> Attachment:
    hash = digest() if hash is None else hash
    return Attachment(new_id(), "image", "x.webp", "image/webp", 3, hash)


def stored_session(store: Store, name: str = "s") -> Session:
    session = make_session(name)
    store.create_session(session)
    return session


def shot(session: Session, attachment: Attachment, offset: float = 1.0) -> SessionScreenshot:
    return SessionScreenshot(new_id(), session.id, "t", offset, attachment.id, attachment.hash)


def _increment(url: str, session_id: str, n: int) -> None:
    """Read-modify-write `total_paused` n times, each in its own transaction."""
    store = StoreBackend(url).open()
    for _ in range(n):
        with store.transaction():
            s = store.session_for_update(session_id)
            s.total_paused += 1
            store.update_session(s)
    store.close()


def _claim_all(url: str, owner: str, start: Any, out: Any) -> None:
    """Claim and complete jobs until none is left; report which (process or thread)."""
    store = StoreBackend(url).open()
    claimed = []
    try:
        start.wait(60)
        while (job := store.claim_job(owner, lease_seconds=3600, now=1000.0)) is not None:
            store.complete_job(job.id, owner, now=1000.0)
            claimed.append(job.id)
    finally:
        store.close()
        out.put((owner, claimed))


def _push_later(url: str, session_id: str, command: str, ready: Any) -> None:
    """Another process: once told the parent waits, push a command."""
    store = StoreBackend(url).open()
    try:
        ready.wait(60)
        time.sleep(0.2)  # the parent is in its wait by now
        store.push_command(session_id, command)
    finally:
        store.close()


def with_video(store: Store, name: str = "s") -> Session:
    session = stored_session(store, name)
    store.save_video(SessionVideo(new_id(), session.id, 640, 360, 15, ["test:red"], "grid"))
    return session


def ocr_text(
    session: Session, offset: float, text: str, screenshot_id: str | None = None
) -> OcrText:
    """An OCR text whose words are its whitespace-separated parts, boxed by their place."""
    words = [OcrWord(w, 10 * i, int(offset), 9, 12) for i, w in enumerate(text.split())]
    return OcrText(new_id(), session.id, offset, screenshot_id, text, words)


def line(session: Session, start: float, text: str) -> TranscriptLine:
    return TranscriptLine(new_id(), session.id, start, start + 2.5, text, "mic")


def chapter(session: Session, start: float, thumbnail: str | None = None) -> VideoChapter:
    return VideoChapter(
        new_id(),
        session.id,
        start,
        start + 60.0,
        f"Chapter at {start}",
        summary="what happened",
        key_topics=["budget", "naïve"],
        thumbnail_attachment_id=thumbnail,
        confidence=0.75,
    )


def note(session: Session, offset: float, content: str) -> ContextItem:
    return ContextItem(new_id(), session.id, "t", offset, "note", content)


def kinds(hits: list[SearchHit]) -> list[tuple[str, str]]:
    return [(h.kind, h.item_id) for h in hits]


# Queries FTS5 cannot parse, or that reach past the text: each is InvalidInput.
HOSTILE_QUERIES = [
    '"',
    '"an unclosed phrase',
    "AND",
    "budget AND",
    "NOT budget",
    "*",
    "NEAR(",
    "-",
    ":",
    "(budget",
    "budget)",
    "e-mail",
    "session:anything",
    "",
    "   ",
    "nul\x00byte",
    "x" * 501,
    "".join(random.Random(7).choices(string.ascii_letters + string.punctuation + " ", k=500)),
]


class FixedRandom(random.Random):
    """`random()` answers the given values in turn."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


LEASE = 30.0
NO_BACKOFF = Backoff(base=1.0, cap=1.0, jitter=0.0)


class TestStoreContract:
    # --- transactions -------------------------------------------------------------------
    def test_a_transaction_commits_all_together(self, store: Store) -> None:
        session = make_session()
        with store.transaction():
            store.create_session(session)
            att = store.add_attachment(make_attachment())
            store.add_screenshot(shot(session, att))
        assert len(store.get_session(session.id).screenshots) == 1

    @pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, NotFound])
    def test_any_exception_rolls_everything_back(
        self, store: Store, error: type[BaseException]
    ) -> None:
        kept = stored_session(store, "kept")
        session = make_session()
        with pytest.raises(error), store.transaction():
            store.create_session(session)
            store.add_attachment(make_attachment("b" * 64))
            kept.name = "changed"
            store.update_session(kept)
            store.set_setting("k", 1)
            raise error("boom")
        assert [s.name for s in store.list_sessions()] == ["kept"]
        assert store.attachment_hashes() == set()
        assert store.get_setting("k") is None
        # The store is usable afterwards.
        store.create_session(session)
        assert len(store.list_sessions()) == 2

    def test_nested_transactions_are_savepoints(self, store: Store) -> None:
        outer, inner, innermost = make_session("outer"), make_session("inner"), make_session("x")
        with store.transaction():
            store.create_session(outer)
            with pytest.raises(ValueError), store.transaction():
                store.create_session(inner)
                with store.transaction():
                    store.create_session(innermost)
                raise ValueError
            with store.transaction():
                store.set_setting("k", {"v": 1})
                with pytest.raises(ValueError), store.transaction():
                    store.set_setting("k", {"v": 2})
                    raise ValueError
            # Inside, the outer transaction sees its own writes.
            assert store.get_session(outer.id).name == "outer"
        assert [s.name for s in store.list_sessions()] == ["outer"]
        assert store.get_setting("k") == {"v": 1}

    def test_an_error_from_the_store_inside_a_transaction_can_be_caught(self, store: Store) -> None:
        session = make_session()
        with store.transaction():
            store.create_session(session)
            with pytest.raises(NotFound):
                store.add_context_item(ContextItem(new_id(), "nope", "t", 0.0, "note", "x"))
            store.add_context_item(ContextItem(new_id(), session.id, "t", 0.0, "note", "x"))
        assert len(store.get_session(session.id).context_items) == 1

    def test_other_clients_see_a_transaction_only_once_committed(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        other = store_backend.open()
        try:
            session = make_session()
            with store.transaction():
                store.create_session(session)
                assert other.list_sessions() == []
                with pytest.raises(NotFound):
                    other.get_session(session.id)
            assert other.get_session(session.id).id == session.id
        finally:
            other.close()

    def test_a_transaction_in_one_thread_is_not_joined_by_another(self, store: Store) -> None:
        inside, release = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def rolled_back() -> None:
            try:
                with store.transaction():
                    store.create_session(make_session("rolled back"))
                    inside.set()
                    release.wait(10)
                    raise RuntimeError("undo")
            except RuntimeError:
                pass
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=rolled_back)
        thread.start()
        assert inside.wait(10)
        writer = threading.Thread(target=lambda: store.create_session(make_session("kept")))
        writer.start()
        release.set()
        thread.join(10)
        writer.join(10)
        assert errors == []
        assert [s.name for s in store.list_sessions()] == ["kept"]

    def test_read_modify_write_in_two_processes_loses_no_update(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        session = stored_session(store)
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_increment, args=(store_backend.url, session.id, 100))
            for _ in range(2)
        ]
        for p in procs:
            p.start()
        _increment(store_backend.url, session.id, 100)
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
        assert store.get_session(session.id).total_paused == 300

    def test_session_for_update_needs_a_transaction(self, store: Store) -> None:
        session = stored_session(store)
        with pytest.raises(StorageError):
            store.session_for_update(session.id)
        with store.transaction():
            assert store.session_for_update(session.id).id == session.id
            with pytest.raises(NotFound):
                store.session_for_update("nope")

    def test_close_is_safe_twice_and_final(self, store_backend: StoreBackend) -> None:
        store = store_backend.open()
        session = stored_session(store)
        store.close()
        store.close()
        with pytest.raises(StorageError):
            store.get_session(session.id)
        with pytest.raises(StorageError):
            store.create_session(make_session())
        with pytest.raises(StorageError), store.transaction():
            pass
        reopened = store_backend.open()
        assert reopened.get_session(session.id).id == session.id
        reopened.close()

    # --- sessions -----------------------------------------------------------------------
    def test_session_round_trip(self, store: Store) -> None:
        audio = store.add_attachment(make_attachment())
        session = Session(
            id=new_id(),
            name="first ✓",
            start_time="2026-01-01T10:00:00.000Z",
            description="what I did",
            status="paused",
            end_time=None,
            paused_at="2026-01-01T10:05:00.000Z",
            total_paused=1.5,
            total_duration=None,
            config=SessionConfig(video=True, sources=["display:1"], fps=30, mic="default"),
            audio_attachment_id=audio.id,
            tags=["a", "b"],
            enrichment={"ocr": StageStatus("done", None, "2026-01-01T11:00:00.000Z")},
            recycled=[RecycledMedia("screenshots", 3, 1200, "2026-01-02T00:00:00.000Z")],
        )
        store.create_session(session)
        assert store.get_session(session.id) == session
        session.recycled.append(RecycledMedia("full_video", 1, 5, "2026-01-03T00:00:00.000Z"))
        store.update_session(session)
        assert store.get_session(session.id).recycled == session.recycled

    def test_children_come_back_in_timeline_order(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        for offset in (3.0, 1.0, 2.0):
            store.add_screenshot(shot(session, att, offset))
            store.add_audio_segment(
                SessionAudioSegment(new_id(), session.id, "t", offset, 1.0, att.id)
            )
            store.add_context_item(ContextItem(new_id(), session.id, "t", offset, "note", "x"))
        video = SessionVideo(new_id(), session.id, 640, 360, 15, ["test:red"], "passthrough")
        store.save_video(video)
        for index in (2, 0, 1):
            store.add_video_chunk(
                SessionVideoChunk(new_id(), video.id, att.id, index, index, index + 1, 15, 3)
            )
        loaded = store.get_session(session.id)
        assert [s.media_offset for s in loaded.screenshots] == [1.0, 2.0, 3.0]
        assert [a.media_offset for a in loaded.audio_segments] == [1.0, 2.0, 3.0]
        assert [c.media_offset for c in loaded.context_items] == [1.0, 2.0, 3.0]
        assert loaded.video is not None
        assert [c.index for c in loaded.video.chunks] == [0, 1, 2]
        assert loaded.video.sources == ["test:red"] and loaded.video.chapters == []

    def test_create_session_refuses_a_used_id_and_a_missing_attachment(self, store: Store) -> None:
        session = stored_session(store, "first")
        with pytest.raises(StorageError):
            store.create_session(replace(session, name="second"))
        with pytest.raises(NotFound, match="attachment"):
            store.create_session(replace(make_session(), audio_attachment_id="nope"))
        assert [s.name for s in store.list_sessions()] == ["first"]

    def test_unknown_session_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.get_session("nope")
        with pytest.raises(NotFound):
            store.update_session(make_session())

    def test_update_session_writes_own_fields_only(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        store.add_screenshot(shot(session, att))
        changed = replace(
            store.get_session(session.id),
            name="renamed",
            status="completed",
            end_time="2026-01-01T01:00:00.000Z",
            total_duration=3600.0,
            tags=["x"],
            enrichment={"ocr": StageStatus("failed", "no tesseract")},
            audio_attachment_id=att.id,
            screenshots=[],
        )
        store.update_session(changed)
        loaded = store.get_session(session.id)
        assert len(loaded.screenshots) == 1
        assert replace(loaded, screenshots=[]) == changed
        with pytest.raises(NotFound, match="attachment"):
            store.update_session(replace(changed, audio_attachment_id="nope"))

    def test_list_newest_first_with_filters(self, store: Store) -> None:
        for i in range(5):
            s = make_session(f"name {i}", f"2026-01-0{i + 1}T00:00:00.000Z")
            s.status = "completed" if i % 2 else "active"
            store.create_session(s)
        rows = store.list_sessions()
        assert [r.name for r in rows] == [f"name {i}" for i in reversed(range(5))]
        assert {r.name for r in store.list_sessions(status="completed")} == {"name 1", "name 3"}
        assert [r.name for r in store.list_sessions(query="E 3")] == ["name 3"]
        assert [r.name for r in store.list_sessions(status="active", limit=2)] == [
            "name 4",
            "name 2",
        ]
        assert len(store.list_sessions(limit=2)) == 2

    def test_list_ties_and_literal_queries(self, store: Store) -> None:
        first = make_session("100% done_ok")
        second = make_session("plain")
        second.description = "about 100% of it"
        third = make_session("tagged")
        third.tags = ["Client-X"]
        for s in (first, second, third):
            store.create_session(s)
        assert [r.name for r in store.list_sessions()] == ["tagged", "plain", "100% done_ok"]
        assert [r.name for r in store.list_sessions(query="100%")] == ["plain", "100% done_ok"]
        assert [r.name for r in store.list_sessions(query="e_o")] == ["100% done_ok"]
        assert store.list_sessions(query="0%_") == []
        assert [r.name for r in store.list_sessions(query="client-x")] == ["tagged"]

    def test_list_counts_children(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        store.add_screenshot(shot(session, att))
        store.add_screenshot(shot(session, att))
        store.add_audio_segment(SessionAudioSegment(new_id(), session.id, "t", 0.0, 1.0, att.id))
        (row,) = store.list_sessions()
        assert (row.screenshot_count, row.audio_segment_count, row.has_video) == (2, 1, False)
        store.save_video(SessionVideo(new_id(), session.id, 64, 64, 15, [], "passthrough"))
        (row,) = store.list_sessions()
        assert row.has_video and row.tags == [] and row.id == session.id

    # --- children -----------------------------------------------------------------------
    def test_children_need_their_parents(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        ghost = make_session()
        with pytest.raises(NotFound, match="session"):
            store.add_screenshot(shot(ghost, att))
        with pytest.raises(NotFound, match="attachment"):
            store.add_screenshot(shot(session, make_attachment()))
        with pytest.raises(NotFound, match="session"):
            store.add_audio_segment(SessionAudioSegment(new_id(), "nope", "t", 0, 1, att.id))
        with pytest.raises(NotFound, match="attachment"):
            store.add_audio_segment(SessionAudioSegment(new_id(), session.id, "t", 0, 1, "no"))
        with pytest.raises(NotFound, match="session"):
            store.add_context_item(ContextItem(new_id(), "nope", "t", 0.0, "note", "x"))
        with pytest.raises(NotFound, match="session"):
            store.save_video(SessionVideo(new_id(), "nope", 64, 64, 15, [], "passthrough"))
        video = SessionVideo(new_id(), session.id, 64, 64, 15, [], "passthrough")
        with pytest.raises(NotFound, match="attachment"):
            store.save_video(replace(video, full_video_attachment_id="nope"))
        with pytest.raises(NotFound, match="video"):
            store.add_video_chunk(SessionVideoChunk(new_id(), "nope", att.id, 0, 0, 1, 1, 1))
        store.save_video(video)
        with pytest.raises(NotFound, match="attachment"):
            store.add_video_chunk(SessionVideoChunk(new_id(), video.id, "nope", 0, 0, 1, 1, 1))
        loaded = store.get_session(session.id)
        assert loaded.screenshots == [] and loaded.audio_segments == []
        assert loaded.context_items == [] and loaded.video == video

    def test_children_refuse_a_used_id(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        first = shot(session, att)
        store.add_screenshot(first)
        with pytest.raises(StorageError):
            store.add_screenshot(replace(first, media_offset=9.0))
        item = ContextItem(new_id(), session.id, "t", 0.0, "note", "x")
        store.add_context_item(item)
        with pytest.raises(StorageError):
            store.add_context_item(replace(item, content="y"))
        segment = SessionAudioSegment(new_id(), session.id, "t", 0.0, 1.0, att.id)
        store.add_audio_segment(segment)
        with pytest.raises(StorageError):
            store.add_audio_segment(segment)
        loaded = store.get_session(session.id)
        assert loaded.screenshots == [first] and loaded.context_items == [item]
        assert loaded.audio_segments == [segment]

    def test_update_screenshot_changes_the_review_fields_only(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        original = shot(session, att, 4.0)
        store.add_screenshot(original)
        edited = replace(
            original,
            media_offset=99.0,
            user_comment="look",
            flagged=True,
            ocr_text="text",
            analysis_status="done",
        )
        store.update_screenshot(edited)
        (loaded,) = store.get_session(session.id).screenshots
        assert loaded == replace(edited, media_offset=4.0)
        with pytest.raises(NotFound):
            store.update_screenshot(replace(edited, id="nope"))

    def test_save_video_inserts_then_updates_its_progress(self, store: Store) -> None:
        session = stored_session(store)
        full = store.add_attachment(make_attachment())
        video = SessionVideo(new_id(), session.id, 640, 360, 15, ["display:1"], "passthrough")
        store.save_video(video)
        done = replace(
            video,
            full_video_attachment_id=full.id,
            duration=12.5,
            chunking_status="complete",
            width=1,  # fixed at insert: not updated
        )
        store.save_video(done)
        assert store.get_session(session.id).video == replace(done, width=640)
        with pytest.raises(StorageError):
            store.save_video(replace(video, id=new_id()))  # a second video for the session

    def test_a_chunk_index_is_used_once_per_video(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        video = SessionVideo(new_id(), session.id, 64, 64, 15, [], "passthrough")
        store.save_video(video)
        chunk = SessionVideoChunk(new_id(), video.id, att.id, 0, 0.0, 1.0, 15, 3)
        store.add_video_chunk(chunk)
        with pytest.raises(StorageError):
            store.add_video_chunk(replace(chunk, id=new_id()))
        loaded = store.get_session(session.id).video
        assert loaded is not None and loaded.chunks == [chunk]

    # --- attachments --------------------------------------------------------------------
    def test_attachments_deduplicate_by_hash(self, store: Store) -> None:
        hash = digest()
        first = store.add_attachment(make_attachment(hash))
        second = store.add_attachment(replace(make_attachment(hash), name="other.webp"))
        assert second == first
        assert store.get_attachment(first.id) == first
        assert store.attachment_by_hash(hash) == first
        assert store.attachment_hashes() == {hash}

    def test_attachment_lookups(self, store: Store) -> None:
        att = Attachment(new_id(), "video", "v.mp4", "video/mp4", 1234, digest(), duration=2.5)
        att = replace(att, width=640, height=360)
        assert store.add_attachment(att) == att
        assert store.get_attachment(att.id) == att
        with pytest.raises(NotFound):
            store.get_attachment("missing")
        assert store.attachment_by_hash(digest()) is None

    @pytest.mark.parametrize("bad", ["A" * 64, "a" * 63, "../" + "a" * 61, "", "g" * 64])
    def test_an_attachment_hash_must_be_a_sha256(self, store: Store, bad: str) -> None:
        with pytest.raises(InvalidInput):
            store.add_attachment(make_attachment(bad))
        assert store.attachment_hashes() == set()

    def test_an_attachment_id_is_used_once(self, store: Store) -> None:
        first = store.add_attachment(make_attachment())
        with pytest.raises(StorageError):
            store.add_attachment(replace(first, hash=digest()))
        assert store.attachment_hashes() == {first.hash}

    def test_find_sessions_answers_as_the_reference_reading(self, store: Store) -> None:
        # Each back end runs its own SQL for the review list; the base class's reading
        # (filters applied to list_sessions in Python) says what it must answer.
        names = ["alpha", "Bravo", "charlie", "delta", "Echo", "foxtrot", "golf"]
        for i, name in enumerate(names):
            session = Session(
                id=new_id(),
                name=name,
                start_time=f"2026-01-0{min(i, 5) + 1}T00:00:00.000Z",  # the last two tie
                description="with 100% care" if i % 2 else "plain",
                tags=["t1"] if i % 3 == 0 else ["t2", "t_1"],
                status="completed" if i % 2 else "interrupted",
                total_duration=float((i * 5) % 7) + i / 10,
            )
            store.create_session(session)
            if i in (1, 4):
                for offset in (9.0, 2.0):
                    att = store.add_attachment(make_attachment())
                    store.add_screenshot(shot(session, att, offset))
        filters = [
            SessionFilter(),
            SessionFilter(statuses=["completed"]),
            SessionFilter(statuses=["completed", "interrupted"]),
            SessionFilter(query="100%"),
            SessionFilter(query="T_1"),
            SessionFilter(query="%"),
            SessionFilter(tag="t1"),
            SessionFilter(tag="t"),
            SessionFilter(since="2026-01-02T00:00:00.000Z", until="2026-01-05T00:00:00.000Z"),
            SessionFilter(limit=2, offset=1),
            SessionFilter(limit=3, offset=6),
            *[
                SessionFilter(sort=sort, limit=4)
                for sort in ("newest", "oldest", "longest", "shortest", "name")
            ],
            SessionFilter(statuses=["completed"], tag="t2", query="care", sort="oldest"),
        ]
        for f in filters:
            assert store.find_sessions(f) == SessionRows.find_sessions(store, f), f

    def test_attachments_for_a_session(self, store: Store) -> None:
        session, other = stored_session(store), stored_session(store)
        atts = [store.add_attachment(make_attachment()) for _ in range(6)]
        shared, shot_att, audio_att, full, chunk_att, joined = atts
        store.add_screenshot(shot(session, shot_att))
        store.add_screenshot(shot(session, shared))
        store.add_screenshot(shot(other, shared))
        store.add_audio_segment(SessionAudioSegment(new_id(), session.id, "t", 0, 1, audio_att.id))
        video = SessionVideo(new_id(), session.id, 64, 64, 15, [], "passthrough")
        store.save_video(replace(video, full_video_attachment_id=full.id))
        store.add_video_chunk(SessionVideoChunk(new_id(), video.id, chunk_att.id, 0, 0, 1, 1, 1))
        store.add_video_chunk(SessionVideoChunk(new_id(), video.id, shared.id, 1, 1, 2, 1, 1))
        session.audio_attachment_id = joined.id
        store.update_session(session)
        found = store.attachments_for(session.id)
        assert sorted(a.id for a in found) == sorted(a.id for a in atts)
        assert [a.id for a in store.attachments_for(other.id)] == [shared.id]
        assert store.attachments_for("nope") == []
        assert store.attachment_hashes() == {a.hash for a in atts}

    # --- live coordination --------------------------------------------------------------
    def test_live_sessions_and_recorder(self, store: Store) -> None:
        active, paused, done = stored_session(store), stored_session(store), make_session()
        paused.status = "paused"
        store.update_session(paused)
        done.status = "completed"
        store.create_session(done)
        me, other = current_owner(), ProcessOwner("elsewhere", 42, "7")
        store.set_recorder(active.id, me)
        store.heartbeat(active.id, 123.5)
        store.set_recorder(paused.id, other)
        live = {s.id: s for s in store.live_sessions()}
        assert set(live) == {active.id, paused.id}
        assert (live[active.id].owner, live[active.id].heartbeat) == (me, 123.5)
        assert (live[paused.id].owner, live[paused.id].status) == (other, "paused")
        assert live[paused.id].heartbeat is None
        store.set_recorder(active.id, None)
        store.heartbeat(active.id, 200.0)
        (now_active,) = [s for s in store.live_sessions() if s.id == active.id]
        assert (now_active.owner, now_active.heartbeat) == (None, 200.0)
        active.status = "completed"
        store.update_session(active)
        assert [s.id for s in store.live_sessions()] == [paused.id]

    def test_live_state_of_an_unknown_session_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.set_recorder("nope", current_owner())
        with pytest.raises(NotFound):
            store.heartbeat("nope", 1.0)
        with pytest.raises(NotFound):
            store.write_stats(RecordingStats("nope"))
        with pytest.raises(NotFound):
            store.push_command("nope", "end")
        assert store.read_stats("nope") is None
        assert store.take_commands("nope") == []

    def test_stats_round_trip_and_replace(self, store: Store) -> None:
        s = stored_session(store)
        assert store.read_stats(s.id) is None
        stats = RecordingStats(
            s.id,
            state="paused",
            frames_captured=700,
            frames_processed=690,
            frames_dropped=10,
            drop_rate=10 / 700,
            fps=14.9,
            target_fps=15.0,
            bytes_written=123_456_789,
            bitrate_kbps=812.5,
            encode_lag_ms=3.25,
            health="warning",
            updated_at="2026-01-01T00:00:01.250Z",
            audio={"mic_level": -23.5},
        )
        store.write_stats(stats)
        assert store.read_stats(s.id) == stats
        store.write_stats(RecordingStats(s.id, frames_captured=1))
        latest = store.read_stats(s.id)
        assert latest is not None and latest.frames_captured == 1 and latest.audio == {}

    def test_commands_are_taken_once_oldest_first(self, store: Store) -> None:
        s, other = stored_session(store), stored_session(store)
        assert store.take_commands(s.id) == []
        for command in ("pause", "resume", "end"):
            store.push_command(s.id, command)
        store.push_command(other.id, "pause")
        assert store.take_commands(s.id) == ["pause", "resume", "end"]
        assert store.take_commands(s.id) == []
        assert store.take_commands(other.id) == ["pause"]

    def test_commands_cross_clients_and_are_taken_by_one(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        s = stored_session(store)
        clients = [store_backend.open() for _ in range(3)]
        try:
            for i in range(30):
                clients[i % 3].push_command(s.id, f"c{i}")
            taken: list[list[str]] = [[] for _ in clients]

            deadline = time.monotonic() + 20

            def take(i: int) -> None:
                while sum(map(len, taken)) < 30 and time.monotonic() < deadline:
                    taken[i].extend(clients[i].take_commands(s.id))

            threads = [threading.Thread(target=take, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            everything = [c for commands in taken for c in commands]
            assert sorted(everything) == sorted(f"c{i}" for i in range(30))
            for commands in taken:
                assert commands == sorted(commands, key=lambda c: int(c[1:]))
        finally:
            for client in clients:
                client.close()

    # --- blob intents -------------------------------------------------------------------
    def test_blob_intents(self, store: Store) -> None:
        owner, other = ProcessOwner("h", 1, "2"), ProcessOwner("h", 3, "4")
        hash = digest()
        store.add_blob_intent(BlobIntent(hash, owner))
        store.add_blob_intent(BlobIntent(hash, owner))
        store.add_blob_intent(BlobIntent(hash, other))
        assert sorted(store.blob_intents(), key=lambda i: i.owner.pid) == [
            BlobIntent(hash, owner),
            BlobIntent(hash, other),
        ]
        store.remove_blob_intent(hash, owner)
        store.remove_blob_intent(hash, owner)
        assert store.blob_intents() == [BlobIntent(hash, other)]

    # --- settings -----------------------------------------------------------------------
    def test_settings(self, store: Store) -> None:
        assert store.get_setting("missing") is None
        value = {"exclude": ["*bank*"], "budget": 10**12, "ratio": 0.5, "on": True, "n": None}
        store.set_setting("privacy", value)
        assert store.get_setting("privacy") == value
        store.set_setting("privacy", (1, "two"))
        assert store.get_setting("privacy") == [1, "two"]

    @pytest.mark.parametrize("bad", [object(), float("nan"), {1: {2}}])
    def test_a_setting_must_be_json(self, store: Store, bad: object) -> None:
        store.set_setting("k", "kept")
        with pytest.raises(InvalidInput):
            store.set_setting("k", bad)
        assert store.get_setting("k") == "kept"

    # --- health -------------------------------------------------------------------------
    def test_healthy_store_has_no_problems(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        store.add_screenshot(shot(session, att))
        assert store.integrity_problems() == []

    # --- jobs ---------------------------------------------------------------------------
    def test_enqueue_keeps_one_active_job_per_session_and_kind(self, store: Store) -> None:
        s, other = stored_session(store), stored_session(store)
        job = store.enqueue_job(s.id, "ocr", now=10.0)
        assert (job.state, job.attempt, job.run_at, job.kind) == ("queued", 0, 10.0, "ocr")
        assert job.created_at == "1970-01-01T00:00:10.000Z" and job.finished_at is None
        assert store.enqueue_job(s.id, "ocr", now=20.0) == job
        transcribe = store.enqueue_job(s.id, "transcribe", now=20.0)
        elsewhere = store.enqueue_job(other.id, "ocr", now=20.0)
        assert len({job.id, transcribe.id, elsewhere.id}) == 3
        claimed = store.claim_job("w1", lease_seconds=LEASE, now=30.0)
        assert claimed is not None and claimed.id == job.id
        assert store.enqueue_job(s.id, "ocr", now=31.0).id == job.id, "running is active"
        store.complete_job(job.id, "w1", now=32.0)
        again = store.enqueue_job(s.id, "ocr", now=33.0)
        assert again.id != job.id and again.state == "queued"
        assert store.get_job(job.id).state == "done"
        assert len(store.list_jobs()) == 4

    def test_enqueue_needs_a_session_and_a_kind(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.enqueue_job("nope", "ocr", now=0.0)
        with pytest.raises(InvalidInput):
            store.enqueue_job(stored_session(store).id, "", now=0.0)
        assert store.list_jobs() == []

    def test_claims_take_the_oldest_due_job_first(self, store: Store) -> None:
        sessions = [stored_session(store) for _ in range(3)]
        jobs = [store.enqueue_job(s.id, "ocr", now=10.0 + i) for i, s in enumerate(sessions)]
        later = store.enqueue_job(sessions[0].id, "index", now=50.0)
        assert store.claim_job("w", lease_seconds=LEASE, now=9.0) is None, "nothing due yet"
        claimed = [store.claim_job("w", lease_seconds=LEASE, now=20.0) for _ in range(4)]
        assert [j.id if j else None for j in claimed] == [j.id for j in jobs] + [None]
        first = claimed[0]
        assert first is not None
        assert (first.state, first.attempt, first.lease_owner) == ("running", 1, "w")
        assert first.lease_until == 20.0 + LEASE and isinstance(first.lease_until, float)
        assert isinstance(first.run_at, float)
        assert store.get_job(first.id) == first
        again = store.claim_job("w", lease_seconds=LEASE, now=49.9)
        assert again is None, "the index job is not due, the others' leases still run"
        again = store.claim_job("w", lease_seconds=LEASE, now=50.0)
        assert again is not None and again.id == jobs[0].id, "lease ran out: due since 10"
        again = store.claim_job("w", lease_seconds=LEASE, now=50.0)
        assert again is not None and again.id == jobs[1].id
        again = store.claim_job("w", lease_seconds=LEASE, now=50.0)
        assert again is not None and again.id == jobs[2].id
        again = store.claim_job("w", lease_seconds=LEASE, now=50.0)
        assert again is not None and again.id == later.id

    def test_claims_can_be_limited_to_kinds(self, store: Store) -> None:
        s = stored_session(store)
        ocr = store.enqueue_job(s.id, "ocr", now=1.0)
        index = store.enqueue_job(s.id, "index", now=2.0)
        assert store.claim_job("w", lease_seconds=LEASE, now=5.0, kinds=[]) is None
        got = store.claim_job("w", lease_seconds=LEASE, now=5.0, kinds=["index", "chapters"])
        assert got is not None and got.id == index.id
        assert store.claim_job("w", lease_seconds=LEASE, now=5.0, kinds=["index"]) is None
        got = store.claim_job("w", lease_seconds=LEASE, now=5.0)
        assert got is not None and got.id == ocr.id

    def test_a_stalled_job_is_picked_again_once_its_lease_runs_out(self, store: Store) -> None:
        job = store.enqueue_job(stored_session(store).id, "ocr", now=0.0)
        first = store.claim_job("w1", lease_seconds=LEASE, now=100.0)
        assert first is not None and first.attempt == 1
        assert store.claim_job("w2", lease_seconds=LEASE, now=129.9) is None
        second = store.claim_job("w2", lease_seconds=LEASE, now=130.0)
        assert second is not None and second.id == job.id
        assert (second.attempt, second.lease_owner, second.lease_until) == (2, "w2", 160.0)

    def test_a_late_worker_changes_nothing(self, store: Store) -> None:
        job = store.enqueue_job(stored_session(store).id, "ocr", now=0.0)
        store.claim_job("w1", lease_seconds=LEASE, now=0.0)
        # Ran out, nobody took it over yet: still refused.
        before = store.get_job(job.id)
        with pytest.raises(LeaseLost, match="ran out"):
            store.complete_job(job.id, "w1", now=LEASE)
        with pytest.raises(LeaseLost):
            store.fail_job(job.id, "w1", "x", now=LEASE, max_attempts=5, backoff=NO_BACKOFF)
        assert store.renew_job(job.id, "w1", lease_seconds=LEASE, now=LEASE) is False
        assert store.get_job(job.id) == before
        # Taken over: refused too, and the new owner is untouched.
        store.claim_job("w2", lease_seconds=LEASE, now=40.0)
        taken = store.get_job(job.id)
        with pytest.raises(LeaseLost, match="w2 took it over"):
            store.complete_job(job.id, "w1", now=41.0)
        with pytest.raises(LeaseLost):
            store.fail_job(job.id, "w1", "x", now=41.0, max_attempts=5, backoff=NO_BACKOFF)
        with pytest.raises(LeaseLost):
            store.release_job(job.id, "w1")
        assert store.renew_job(job.id, "w1", lease_seconds=LEASE, now=41.0) is False
        assert store.get_job(job.id) == taken
        store.complete_job(job.id, "w2", now=42.0)
        done = store.get_job(job.id)
        assert (done.state, done.finished_at, done.lease_owner, done.lease_until) == (
            "done",
            "1970-01-01T00:00:42.000Z",
            None,
            None,
        )
        with pytest.raises(LeaseLost, match="done"):
            store.complete_job(job.id, "w2", now=43.0)

    def test_unknown_jobs_are_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.get_job("nope")
        with pytest.raises(NotFound):
            store.complete_job("nope", "w", now=0.0)
        with pytest.raises(NotFound):
            store.fail_job("nope", "w", "x", now=0.0, max_attempts=3, backoff=NO_BACKOFF)
        with pytest.raises(NotFound):
            store.renew_job("nope", "w", lease_seconds=LEASE, now=0.0)
        with pytest.raises(NotFound):
            store.release_job("nope", "w")

    def test_renew_extends_the_lease(self, store: Store) -> None:
        job = store.enqueue_job(stored_session(store).id, "ocr", now=0.0)
        store.claim_job("w1", lease_seconds=LEASE, now=0.0)
        assert store.renew_job(job.id, "w1", lease_seconds=LEASE, now=20.0) is True
        assert store.get_job(job.id).lease_until == 50.0
        assert store.renew_job(job.id, "w2", lease_seconds=LEASE, now=21.0) is False
        assert store.claim_job("w2", lease_seconds=LEASE, now=45.0) is None
        store.complete_job(job.id, "w1", now=49.0)
        assert store.get_job(job.id).state == "done"

    def test_failures_back_off_with_jitter_then_fail_for_good(self, store: Store) -> None:
        job = store.enqueue_job(stored_session(store).id, "transcribe", now=0.0)
        backoff = Backoff(base=10.0, factor=2.0, cap=1000.0, jitter=0.5, rng=FixedRandom(0, 1))
        now = 0.0
        store.claim_job("w", lease_seconds=LEASE, now=now)
        failed = store.fail_job(job.id, "w", "boom 1", now=now, max_attempts=3, backoff=backoff)
        assert (failed.state, failed.run_at, failed.last_error) == ("queued", 10.0, "boom 1")
        assert (failed.lease_owner, failed.lease_until, failed.attempt) == (None, None, 1)
        assert store.get_job(job.id) == failed
        assert store.claim_job("w", lease_seconds=LEASE, now=9.9) is None
        now = 10.0
        assert store.claim_job("w", lease_seconds=LEASE, now=now) is not None
        failed = store.fail_job(job.id, "w", "boom 2", now=now, max_attempts=3, backoff=backoff)
        assert failed.run_at == now + 20.0 * 0.5  # the second ceiling, fully jittered
        now = failed.run_at
        claimed = store.claim_job("w", lease_seconds=LEASE, now=now)
        assert claimed is not None and claimed.attempt == 3
        failed = store.fail_job(job.id, "w", "boom 3", now=now, max_attempts=3, backoff=backoff)
        assert (failed.state, failed.last_error) == ("failed", "boom 3")
        assert failed.finished_at == "1970-01-01T00:00:20.000Z"
        assert store.get_job(job.id) == failed
        assert store.claim_job("w", lease_seconds=LEASE, now=10_000.0) is None
        assert store.enqueue_job(job.session_id, "transcribe", now=30.0).id != job.id

    def test_backoff_grows_and_is_jittered_within_bounds(self) -> None:
        backoff = Backoff(base=2.0, factor=3.0, cap=500.0, jitter=0.25, rng=random.Random(7))
        ceilings = [backoff.ceiling(n) for n in range(1, 8)]
        assert ceilings == [2.0, 6.0, 18.0, 54.0, 162.0, 486.0, 500.0]
        assert backoff.ceiling(10_000) == 500.0
        for attempt, ceiling in enumerate(ceilings, 1):
            delays = [backoff.delay(attempt) for _ in range(200)]
            assert all(0.75 * ceiling <= d <= ceiling for d in delays)
            assert len(set(delays)) > 100, "jitter spreads the delays"
        with pytest.raises(InvalidInput):
            Backoff(base=0)
        with pytest.raises(InvalidInput):
            Backoff(jitter=1.5)

    def test_release_gives_the_job_back(self, store: Store) -> None:
        job = store.enqueue_job(stored_session(store).id, "ocr", now=0.0)
        store.claim_job("w1", lease_seconds=LEASE, now=5.0)
        with pytest.raises(LeaseLost):
            store.release_job(job.id, "w2")
        store.release_job(job.id, "w1")
        released = store.get_job(job.id)
        assert (released.state, released.attempt, released.lease_owner) == ("queued", 0, None)
        assert released.lease_until is None
        again = store.claim_job("w2", lease_seconds=LEASE, now=6.0)
        assert again is not None and (again.id, again.attempt) == (job.id, 1)
        with pytest.raises(LeaseLost, match="w2"):
            store.release_job(job.id, "w1")

    def test_a_job_whose_workers_keep_dying_fails(self, store: Store) -> None:
        job = store.enqueue_job(stored_session(store).id, "ocr", now=0.0)
        now = 0.0
        for attempt in (1, 2):
            claimed = store.claim_job("w", lease_seconds=LEASE, now=now, max_attempts=2)
            assert claimed is not None and claimed.attempt == attempt
            now += LEASE  # the worker died: its lease runs out
        assert store.claim_job("w", lease_seconds=LEASE, now=now, max_attempts=2) is None
        failed = store.get_job(job.id)
        assert failed.state == "failed" and failed.lease_owner is None
        assert failed.last_error is not None and "ran out of its lease" in failed.last_error

    def test_complete_commits_with_the_stages_results(self, store: Store) -> None:
        s = stored_session(store)
        job = store.enqueue_job(s.id, "ocr", now=0.0)
        store.claim_job("w", lease_seconds=LEASE, now=0.0)
        with pytest.raises(RuntimeError), store.transaction():
            s.enrichment = {"ocr": StageStatus("done")}
            store.update_session(s)
            store.complete_job(job.id, "w", now=1.0)
            raise RuntimeError("crash before commit")
        assert store.get_job(job.id).state == "running"
        assert store.get_session(s.id).enrichment == {}
        # A lost lease undoes the results written with it.
        with pytest.raises(LeaseLost), store.transaction():
            store.update_session(s)
            store.complete_job(job.id, "w", now=LEASE + 1)
        assert store.get_session(s.id).enrichment == {}
        store.claim_job("w", lease_seconds=LEASE, now=LEASE + 1)
        with store.transaction():
            store.update_session(s)
            store.complete_job(job.id, "w", now=LEASE + 2)
        assert store.get_job(job.id).state == "done"
        assert store.get_session(s.id).enrichment == s.enrichment != {}

    def test_list_jobs_filters(self, store: Store) -> None:
        s, other = stored_session(store), stored_session(store)
        a = store.enqueue_job(s.id, "ocr", now=0.0)
        b = store.enqueue_job(other.id, "ocr", now=0.0)
        c = store.enqueue_job(s.id, "index", now=0.0)
        store.claim_job("w", lease_seconds=LEASE, now=0.0)
        assert [j.id for j in store.list_jobs()] == [a.id, b.id, c.id]
        assert [j.id for j in store.list_jobs(session_id=s.id)] == [a.id, c.id]
        assert [j.id for j in store.list_jobs(state="queued")] == [b.id, c.id]
        assert [j.id for j in store.list_jobs(state="running", session_id=other.id)] == []

    def test_bad_lease_and_attempt_limits_are_refused(self, store: Store) -> None:
        job = store.enqueue_job(stored_session(store).id, "ocr", now=0.0)
        with pytest.raises(InvalidInput):
            store.claim_job("w", lease_seconds=0, now=0.0)
        with pytest.raises(InvalidInput):
            store.claim_job("w", lease_seconds=LEASE, now=0.0, max_attempts=0)
        assert store.get_job(job.id).state == "queued"
        store.claim_job("w", lease_seconds=LEASE, now=0.0)
        with pytest.raises(InvalidInput):
            store.renew_job(job.id, "w", lease_seconds=-1, now=0.0)
        with pytest.raises(InvalidInput):
            store.fail_job(job.id, "w", "x", now=0.0, max_attempts=0, backoff=NO_BACKOFF)
        assert store.get_job(job.id).state == "running"

    @pytest.mark.parametrize("workers", ["processes", "threads"])
    def test_concurrent_claims_never_share_a_job(
        self, store: Store, store_backend: StoreBackend, workers: str
    ) -> None:
        sessions = [stored_session(store) for _ in range(40)]
        with store.transaction():
            jobs = {
                store.enqueue_job(s.id, kind, now=0.0).id
                for s in sessions
                for kind in ("ocr", "transcribe", "chapters", "index", "thumbnails")
            }
        assert len(jobs) == 200
        owners = [f"worker-{i}" for i in range(4)]
        start: Any
        out: Any
        runners: list[Any]
        if workers == "processes":
            ctx = multiprocessing.get_context("spawn")
            start, out = ctx.Barrier(len(owners)), ctx.Queue()
            make: Callable[..., Any] = ctx.Process
        else:
            start, out = threading.Barrier(len(owners)), Queue()
            make = threading.Thread
        runners = [make(target=_claim_all, args=(store_backend.url, o, start, out)) for o in owners]
        for runner in runners:
            runner.start()
        results = dict(out.get(timeout=120) for _ in owners)
        for runner in runners:
            runner.join(60)
        claimed = [job_id for owner in owners for job_id in results[owner]]
        assert len(claimed) == len(set(claimed)), "a job was claimed twice"
        assert set(claimed) == jobs
        assert all(j.state == "done" and j.attempt == 1 for j in store.list_jobs())

    # --- enrichment rows ----------------------------------------------------------------
    def test_get_session_loads_what_enrichment_found(self, store: Store) -> None:
        session = with_video(store)
        thumb = store.add_attachment(make_attachment())
        events = [
            ActivityEvent(new_id(), session.id, "t", offset, "Terminal", f"window {offset}")
            for offset in (3.0, 1.0, 2.0)
        ]
        for event in events:
            store.add_activity(event)
        lines = [line(session, 9.0, "later"), line(session, 4.0, "earlier")]
        store.replace_transcript(session.id, lines)
        texts = [ocr_text(session, 8.0, "second frame"), ocr_text(session, 5.0, "first frame")]
        store.replace_ocr(session.id, texts)
        chapters = [chapter(session, 60.0), chapter(session, 0.0, thumb.id)]
        store.replace_chapters(session.id, chapters)
        loaded = store.get_session(session.id)
        assert loaded.activity == sorted(events, key=lambda e: e.media_offset)
        assert loaded.transcript == lines[::-1]
        assert loaded.ocr == [replace(t, words=[]) for t in texts[::-1]], "no word boxes"
        assert loaded.video is not None and loaded.video.chapters == chapters[::-1]
        assert store.ocr_for(session.id) == texts[::-1]
        assert store.ocr_for(session.id)[0].words[1] == OcrWord("frame", 10, 5, 9, 12)

    def test_replace_gives_the_same_rows_when_run_again(self, store: Store) -> None:
        session, other = with_video(store), with_video(store)
        thumb = store.add_attachment(make_attachment())
        texts = [ocr_text(session, float(i), f"frame {i} quokka") for i in range(3)]
        lines = [line(session, float(i), f"said {i} quokka") for i in range(3)]
        chapters = [chapter(session, 0.0, thumb.id), chapter(session, 60.0)]
        theirs = ocr_text(other, 1.0, "quokka elsewhere")
        store.replace_ocr(other.id, [theirs])
        for _ in range(3):  # a stage run again after a crash, twice
            store.replace_ocr(session.id, texts)
            store.replace_transcript(session.id, lines)
            store.replace_chapters(session.id, chapters)
        loaded = store.get_session(session.id)
        assert loaded.ocr == [replace(t, words=[]) for t in texts]
        assert loaded.transcript == lines
        assert loaded.video is not None and loaded.video.chapters == chapters
        hits = store.search("quokka")
        assert len(hits) == 7 and len(set(kinds(hits))) == 7, "each row once in the index"
        # A run with other results (new ids) replaces the old ones whole.
        store.replace_ocr(session.id, [*texts[:1], ocr_text(session, 7.0, "new wombat")])
        store.replace_transcript(session.id, [])
        store.replace_chapters(session.id, [])
        loaded = store.get_session(session.id)
        assert [t.text for t in loaded.ocr] == ["frame 0 quokka", "new wombat"]
        assert loaded.transcript == [] and loaded.video is not None
        assert loaded.video.chapters == []
        assert {h.item_id for h in store.search("quokka")} == {texts[0].id, theirs.id}
        assert [h.kind for h in store.search("wombat")] == ["ocr"]
        assert store.get_session(other.id).ocr == [replace(theirs, words=[])]

    def test_a_stage_commits_with_its_status_and_job_or_not_at_all(self, store: Store) -> None:
        session = stored_session(store)
        store.replace_ocr(session.id, [ocr_text(session, 1.0, "old quokka")])
        job = store.enqueue_job(session.id, "ocr", now=0.0)
        store.claim_job("w", lease_seconds=LEASE, now=0.0)
        with pytest.raises(RuntimeError), store.transaction():
            store.replace_ocr(session.id, [ocr_text(session, 2.0, "new wombat")])
            store.set_stage_status(session.id, "ocr", "done")
            store.complete_job(job.id, "w", now=1.0)
            assert [h.kind for h in store.search("wombat")] == ["ocr"], "seen inside"
            raise RuntimeError("killed before the commit")
        assert [t.text for t in store.get_session(session.id).ocr] == ["old quokka"]
        assert store.search("wombat") == [] and len(store.search("quokka")) == 1
        assert store.get_session(session.id).enrichment == {}
        assert store.get_job(job.id).state == "running"
        with store.transaction():
            store.replace_ocr(session.id, [ocr_text(session, 2.0, "new wombat")])
            store.set_stage_status(session.id, "ocr", "done")
            store.complete_job(job.id, "w", now=1.0)
        assert [h.kind for h in store.search("wombat")] == ["ocr"]
        assert store.search("quokka") == []
        assert store.get_session(session.id).enrichment["ocr"].status == "done"

    def test_replace_refuses_bad_rows_and_changes_nothing(self, store: Store) -> None:
        session, other = with_video(store), stored_session(store)
        att = store.add_attachment(make_attachment())
        screenshot = shot(session, att)
        store.add_screenshot(screenshot)
        kept = ocr_text(session, 1.0, "kept", screenshot.id)
        store.replace_ocr(session.id, [kept])
        store.replace_transcript(session.id, [line(session, 0.0, "kept")])
        store.replace_chapters(session.id, [chapter(session, 0.0, att.id)])
        before = store.get_session(session.id)
        with pytest.raises(InvalidInput, match="belongs to session"):
            store.replace_ocr(session.id, [ocr_text(session, 2.0, "x"), ocr_text(other, 2.0, "y")])
        with pytest.raises(NotFound, match="session"):
            store.replace_ocr("nope", [])
        with pytest.raises(NotFound, match="screenshot"):
            store.replace_ocr(session.id, [ocr_text(session, 2.0, "x", "no-such-shot")])
        with pytest.raises(StorageError):
            store.replace_ocr(session.id, [kept, replace(kept, media_offset=2.0)])  # one id twice
        with pytest.raises(InvalidInput, match="source"):
            bad: Any = "speaker"
            store.replace_transcript(session.id, [replace(line(session, 0.0, "x"), source=bad)])
        with pytest.raises(InvalidInput, match="before it starts"):
            store.replace_transcript(session.id, [replace(line(session, 5.0, "x"), end_offset=4.0)])
        with pytest.raises(NotFound, match="attachment"):
            store.replace_chapters(session.id, [chapter(session, 0.0, "no-such-attachment")])
        with pytest.raises(NotFound, match="video"):
            store.replace_chapters(other.id, [chapter(other, 0.0)])
        assert store.get_session(session.id) == before
        assert store.ocr_for(session.id) == [kept]
        assert [h.item_id for h in store.search("kept", session_id=session.id)] != []
        with pytest.raises(NotFound):
            store.ocr_for("nope")

    def test_add_activity(self, store: Store) -> None:
        session = stored_session(store)
        event = ActivityEvent(new_id(), session.id, "2026-01-01T00:00:01.000Z", 1.0, "Code", "x")
        store.add_activity(event)
        with pytest.raises(StorageError):
            store.add_activity(replace(event, title="again"))
        with pytest.raises(NotFound):
            store.add_activity(replace(event, id=new_id(), session_id="nope"))
        assert store.get_session(session.id).activity == [event]

    def test_stage_status_round_trip(self, store: Store) -> None:
        session = stored_session(store)
        before = utc_now()
        store.set_stage_status(session.id, "ocr", "running")
        store.set_stage_status(session.id, "transcribe", "failed", "no model named tiny.xx")
        store.set_stage_status(session.id, "ocr", "done")
        loaded = store.get_session(session.id)
        ocr, transcribe = loaded.enrichment["ocr"], loaded.enrichment["transcribe"]
        assert (ocr.status, ocr.error) == ("done", None)
        assert (transcribe.status, transcribe.error) == ("failed", "no model named tiny.xx")
        assert set(loaded.enrichment) == {"ocr", "transcribe"}
        assert parse_time(before) <= parse_time(ocr.updated_at) <= parse_time(utc_now())
        # The session's own fields are untouched, and saving the session keeps the statuses.
        assert replace(loaded, enrichment={}) == replace(
            store.get_session(session.id), enrichment={}
        )
        loaded.name = "renamed"
        store.update_session(loaded)
        assert store.get_session(session.id).enrichment == loaded.enrichment

    @pytest.mark.parametrize(
        ("stage", "status", "error"),
        [
            ("", "done", InvalidInput),
            ("OCR", "done", InvalidInput),
            ("a.b", "done", InvalidInput),
            ("x" * 65, "done", InvalidInput),
            ("ocr", "finished", InvalidInput),
            ("ocr", "", InvalidInput),
        ],
    )
    def test_stage_status_refuses_bad_names(
        self, store: Store, stage: str, status: Any, error: type[Exception]
    ) -> None:
        session = stored_session(store)
        with pytest.raises(error):
            store.set_stage_status(session.id, stage, status)
        assert store.get_session(session.id).enrichment == {}

    def test_stage_status_of_an_unknown_session_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.set_stage_status("nope", "ocr", "done")

    def test_chapter_thumbnails_are_attachments_of_the_session(self, store: Store) -> None:
        session = with_video(store)
        first, shared, second = (store.add_attachment(make_attachment()) for _ in range(3))
        store.add_screenshot(shot(session, shared))
        unused = store.replace_chapters(
            session.id, [chapter(session, 0.0, first.id), chapter(session, 60.0, shared.id)]
        )
        assert unused == []
        assert {a.id for a in store.attachments_for(session.id)} == {first.id, shared.id}
        # The first thumbnail is no longer used by anything; the shared one still is.
        unused = store.replace_chapters(session.id, [chapter(session, 0.0, second.id)])
        assert unused == [first.id]
        assert {a.id for a in store.attachments_for(session.id)} == {shared.id, second.id}
        assert store.attachment_hashes() == {first.hash, shared.hash, second.hash}, "rows kept"
        assert store.replace_chapters(session.id, [chapter(session, 0.0, second.id)]) == []
        assert store.delete_attachment(shared.id) is None, "a screenshot uses it"
        assert store.delete_attachment(second.id) is None, "a chapter uses it"
        assert store.delete_attachment("nope") is None
        assert store.delete_attachment(first.id) == first
        assert store.attachment_hashes() == {shared.hash, second.hash}
        assert store.replace_chapters(session.id, []) == [second.id]

    def test_remove_media_deletes_one_kind_of_rows_and_keeps_the_rest(self, store: Store) -> None:
        session = store.get_session(with_video(store).id)
        assert session.video is not None
        full, chunk, picture, thumb = (store.add_attachment(make_attachment()) for _ in range(4))
        video = replace(session.video, full_video_attachment_id=full.id)
        store.save_video(video)
        store.add_video_chunk(SessionVideoChunk(new_id(), video.id, chunk.id, 0, 0, 1, 5, 3))
        first, second = shot(session, picture, 1.0), shot(session, picture, 2.0)
        store.add_screenshot(first)
        store.add_screenshot(second)
        store.replace_chapters(session.id, [chapter(session, 0.0, thumb.id)])
        store.replace_ocr(session.id, [ocr_text(session, 1.0, "kept text", first.id)])

        assert store.remove_media(session.id, "video_chunks") == [chunk.id]
        assert store.remove_media(session.id, "video_chunks") == []
        assert store.remove_media(session.id, "full_video") == [full.id]
        assert store.remove_media(session.id, "screenshots") == [picture.id]  # once
        after = store.get_session(session.id)
        assert after.video is not None and after.video.chunks == []
        assert after.video.full_video_attachment_id is None and after.screenshots == []
        assert after.video.chapters[0].thumbnail_attachment_id == thumb.id
        assert [(o.text, o.screenshot_id) for o in after.ocr] == [("kept text", None)]
        assert store.list_sessions()[0].screenshot_count == 0
        # Only the rows: the attachments are the caller's to delete, and now may be.
        assert [store.delete_attachment(a.id) for a in (full, chunk, picture)] == [
            full,
            chunk,
            picture,
        ]
        assert store.delete_attachment(thumb.id) is None
        with pytest.raises(NotFound):
            store.remove_media("nope", "screenshots")
        with pytest.raises(InvalidInput):
            store.remove_media(session.id, "audio")  # type: ignore[arg-type]

    # --- search -------------------------------------------------------------------------
    def test_search_finds_every_kind_with_the_match_marked(self, store: Store) -> None:
        session = stored_session(store, "Quarterly planning")
        att = store.add_attachment(make_attachment())
        commented = replace(shot(session, att, 12.0), user_comment="look at this chart")
        store.add_screenshot(commented)
        item = note(session, 3.5, "call the plumber tomorrow")
        store.add_context_item(item)
        event = ActivityEvent(new_id(), session.id, "t", 7.0, "LibreOffice", "Invoice draft")
        store.add_activity(event)
        text = ocr_text(session, 20.0, "Total revenue grew")
        store.replace_ocr(session.id, [text])
        said = line(session, 30.0, "we discussed the budget at length")
        store.replace_transcript(session.id, [said])
        expected = {
            "quarterly": ("session", session.id, 0.0, "[Quarterly] planning"),
            "plumber": ("note", item.id, 3.5, "call the [plumber] tomorrow"),
            "chart": ("comment", commented.id, 12.0, "look at this [chart]"),
            "invoice": ("activity", event.id, 7.0, "[Invoice] draft — LibreOffice"),
            "libreoffice": ("activity", event.id, 7.0, "Invoice draft — [LibreOffice]"),
            "revenue": ("ocr", text.id, 20.0, "Total [revenue] grew"),
            "budget": ("transcript", said.id, 30.0, "we discussed the [budget] at length"),
        }
        for query, (kind, item_id, offset, snippet) in expected.items():
            (hit,) = store.search(query)
            assert (hit.kind, hit.item_id, hit.media_offset, hit.snippet) == (
                kind,
                item_id,
                offset,
                snippet,
            ), query
            assert (hit.session_id, hit.session_name) == (session.id, "Quarterly planning")
            assert hit.words == ([text.words[1]] if kind == "ocr" else [])

    def test_ocr_hits_carry_the_boxes_of_the_matched_words(self, store: Store) -> None:
        session = stored_session(store)
        text = ocr_text(session, 1.0, "Total revenue grew, while total cost fell: REVENUES up")
        store.replace_ocr(session.id, [text])
        w = text.words

        def boxes(query: str) -> list[OcrWord]:
            (hit,) = store.search(query)
            return hit.words

        assert boxes("revenue") == [w[1]]
        assert boxes("rev*") == [w[1], w[7]], "prefixes, any case"
        assert boxes('"total revenue"') == [w[0], w[1]], "the phrase's own words only"
        assert boxes("TOTAL") == [w[0], w[4]]
        assert boxes("cost OR nothing") == [w[5]]
        assert boxes("grew NOT nothing") == [w[2]]
        # Words that do not spell the text (a line the engine left out of them): every
        # word holding a matched word counts.
        loose = OcrText(new_id(), session.id, 2.0, None, "Header\nbilling total", w[:2])
        store.replace_ocr(session.id, [loose])
        (hit,) = store.search("total")
        assert hit.words == [w[0]]

    def test_search_inside_one_session(self, store: Store) -> None:
        mine, theirs = stored_session(store, "mine"), stored_session(store, "theirs")
        for session in (mine, theirs):
            store.add_context_item(note(session, 1.0, "shared quokka note"))
            store.replace_transcript(session.id, [line(session, 2.0, "a quokka said")])
        assert len(store.search("quokka")) == 4
        hits = store.search("quokka", session_id=mine.id)
        assert len(hits) == 2 and {h.session_id for h in hits} == {mine.id}
        assert store.search("quokka", session_id="nope") == []
        assert store.search("quokka", session_id='x" OR "y') == []

    def test_short_repeated_matches_rank_first(self, store: Store) -> None:
        session = stored_session(store)
        filler = " ".join(f"filler{i}" for i in range(40))
        long = note(session, 1.0, f"budget {filler}")
        short = note(session, 2.0, "budget review budget")
        for item in (long, short):
            store.add_context_item(item)
        for i in range(10):
            store.add_context_item(note(session, 10.0 + i, f"unrelated note {i}"))
        hits = store.search("budget")
        assert [h.item_id for h in hits] == [short.id, long.id]
        assert hits[0].score > hits[1].score

    def test_the_best_match_is_found_behind_a_thousand_newer_weaker_ones(
        self, store: Store
    ) -> None:
        # No store ranks only a query's newest 1 000 matches: the best one comes first
        # however many weaker ones were indexed after it.
        session = stored_session(store)
        best = note(session, 0.0, "quokka quokka")
        store.add_context_item(best)
        with store.transaction():
            for i in range(1000):
                store.add_context_item(note(session, 1.0 + i, f"quokka seen on walk {i}"))
        hits = store.search("quokka", limit=3)
        assert hits[0].item_id == best.id
        assert hits[0].score > hits[1].score
        assert len(store.search("quokka", limit=1000)) == 1000

    def test_prefix_and_phrase_queries(self, store: Store) -> None:
        session = stored_session(store)
        a = note(session, 1.0, "deploy the release candidate")
        b = note(session, 2.0, "the candidate deploys a release")
        c = note(session, 3.0, "nothing relevant")
        for item in (a, b, c):
            store.add_context_item(item)

        def found(query: str) -> set[str]:
            return {h.item_id for h in store.search(query)}

        assert found("deploy*") == {a.id, b.id}
        assert found("deploy") == {a.id}
        assert found('"release candidate"') == {a.id}
        assert found('"candidate deploy"*') == {b.id}
        assert found("release candidate") == {a.id, b.id}, "every word, anywhere"
        assert found("relevant OR deploys") == {b.id, c.id}
        assert found("rel* NOT candidate") == {c.id}
        assert found("(deploy OR nothing) AND release") == {a.id}
        assert found("zebra") == set()
        assert found('"..."') == set(), "a phrase of no words finds nothing"

    def test_non_ascii_text_is_found_without_case_and_accents(self, store: Store) -> None:
        session = stored_session(store, "Ünïcôdé session")
        cafe = note(session, 1.0, "Rendez-vous au Café de Flore")
        russian = note(session, 2.0, "Привет, мир")
        for item in (cafe, russian):
            store.add_context_item(item)
        assert [h.item_id for h in store.search("cafe")] == [cafe.id]
        assert [h.item_id for h in store.search("CAFÉ")] == [cafe.id]
        assert store.search("café")[0].snippet == "Rendez-vous au [Café] de Flore"
        assert [h.item_id for h in store.search("привет")] == [russian.id]
        assert [h.item_id for h in store.search("мир")] == [russian.id]
        assert [h.kind for h in store.search("unicode")] == ["session"]
        assert [h.kind for h in store.search("ünï*")] == ["session"]

    def test_what_is_written_is_found_at_once_by_every_client(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        other = store_backend.open()
        try:
            session = stored_session(store, "Morning")
            assert other.search("plumber") == []
            item = note(session, 5.0, "call the plumber")
            store.add_context_item(item)
            (hit,) = other.search("plumber")
            assert (hit.kind, hit.item_id, hit.media_offset) == ("note", item.id, 5.0)
            assert [h.kind for h in other.search("morning")] == ["session"]
        finally:
            other.close()

    def test_an_edited_name_is_found_and_the_old_one_is_not(self, store: Store) -> None:
        session = stored_session(store, "Walrus review")
        store.add_context_item(note(session, 1.0, "quokka"))
        session.name = "Narwhal retrospective"
        session.description = "with the penguin team"
        store.update_session(session)
        assert store.search("walrus") == []
        (hit,) = store.search("narwhal")
        assert hit.snippet == "[Narwhal] retrospective — with the penguin team"
        assert [h.kind for h in store.search("penguin")] == ["session"]
        assert store.search("quokka")[0].session_name == "Narwhal retrospective"
        store.heartbeat(session.id, 1.0)  # writes of other fields leave the index alone
        assert len(store.search("narwhal")) == 1

    def test_an_edited_comment_is_found_and_the_old_one_is_not(self, store: Store) -> None:
        session = stored_session(store)
        att = store.add_attachment(make_attachment())
        screenshot = shot(session, att, 4.0)
        store.add_screenshot(screenshot)
        assert store.search("walrus") == []
        store.update_screenshot(replace(screenshot, user_comment="a walrus"))
        assert [h.item_id for h in store.search("walrus")] == [screenshot.id]
        store.update_screenshot(replace(screenshot, user_comment="a narwhal"))
        assert store.search("walrus") == []
        assert [h.media_offset for h in store.search("narwhal")] == [4.0]
        store.update_screenshot(replace(screenshot, user_comment=None, flagged=True))
        assert store.search("narwhal") == []

    def test_search_pages(self, store: Store) -> None:
        session = stored_session(store)
        for i in range(7):
            store.add_context_item(note(session, float(i), "quokka " * (i + 1) + "x " * 20))
        everything = store.search("quokka")
        assert len(everything) == 7
        scores = [h.score for h in everything]
        assert scores == sorted(scores, reverse=True)
        pages = [store.search("quokka", limit=3, offset=o) for o in (0, 3, 6, 9)]
        assert [len(p) for p in pages] == [3, 3, 1, 0]
        assert [h for p in pages for h in p] == everything

    @pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
    def test_a_malformed_query_is_invalid_input(self, store: Store, query: str) -> None:
        store.add_context_item(note(stored_session(store), 1.0, "budget anything"))
        with pytest.raises(InvalidInput) as caught:
            store.search(query)
        message = str(caught.value)
        assert "query" in message and len(message) < 700, message
        assert store.search("budget") != [], "the store is fine afterwards"

    @pytest.mark.parametrize(("limit", "offset"), [(0, 0), (1001, 0), (10, -1)])
    def test_search_paging_must_make_sense(self, store: Store, limit: int, offset: int) -> None:
        with pytest.raises(InvalidInput):
            store.search("budget", limit=limit, offset=offset)


class TestWaiting:
    """`Store.watch` and `wait_for`: woken by changes other clients commit, never raising.
    A back end may wake for changes of other topics (SQLite wakes on any commit), so each
    test waits after the last write of its own."""

    def test_a_command_from_another_process_wakes_a_wait_long_before_its_timeout(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        s = stored_session(store)
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        proc = ctx.Process(target=_push_later, args=(store_backend.url, s.id, "pause", ready))
        proc.start()
        try:
            with store.watch([Topic.commands(s.id)]) as watch:
                ready.set()
                started = time.monotonic()
                woken = watch.wait(60.0)
                waited = time.monotonic() - started
        finally:
            proc.join(60)
        assert proc.exitcode == 0
        assert woken and waited < 20, waited  # well before the 60 s timeout
        assert store.take_commands(s.id) == ["pause"]

    def test_a_wait_for_a_change_from_another_client_is_woken(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        s = stored_session(store)
        other = store_backend.open()
        try:
            timer = threading.Timer(0.3, other.push_command, (s.id, "end"))
            timer.start()
            started = time.monotonic()
            assert store.wait_for([Topic.commands(s.id)], 30.0)
            assert time.monotonic() - started < 15  # well before the timeout
            timer.join()
        finally:
            other.close()
        assert store.take_commands(s.id) == ["end"]

    def test_a_wait_with_nothing_happening_returns_false_at_its_timeout(self, store: Store) -> None:
        s = stored_session(store)
        with store.watch([Topic.commands(s.id), Topic.jobs()]) as watch:
            started = time.monotonic()
            assert watch.wait(1.0) is False
            waited = time.monotonic() - started
        assert 1.0 <= waited < 10, waited
        started = time.monotonic()
        assert store.wait_for([Topic.session(s.id)], 0.5) is False
        assert 0.5 <= time.monotonic() - started < 10

    def test_the_stop_event_ends_a_wait(self, store: Store) -> None:
        s = stored_session(store)
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        assert store.wait_for([Topic.commands(s.id)], 30.0, stop) is False
        assert time.monotonic() - started < 15  # well before the timeout
        assert store.wait_for([Topic.commands(s.id)], 30.0, stop) is False  # at once

    def test_closing_a_watch_ends_its_wait(self, store: Store) -> None:
        s = stored_session(store)
        watch = store.watch([Topic.stats(s.id)])
        threading.Timer(0.3, watch.close).start()
        started = time.monotonic()
        assert watch.wait(30.0) is False
        assert time.monotonic() - started < 15
        watch.close()  # twice is fine

    def test_a_change_committed_before_the_wait_is_not_missed(
        self, store: Store, store_backend: StoreBackend
    ) -> None:
        s = stored_session(store)
        other = store_backend.open()
        try:
            with store.watch([Topic.commands(s.id)]) as watch:
                other.push_command(s.id, "pause")
                time.sleep(0.5)  # announced, or not, before anybody waits
                started = time.monotonic()
                assert watch.wait(30.0)
                assert time.monotonic() - started < 15
        finally:
            other.close()

    def test_each_topic_is_announced_by_its_writes(self, store: Store) -> None:
        s = stored_session(store)

        def woken(topic: Topic, write: Callable[[], object]) -> bool:
            with store.watch([topic]) as watch:
                write()
                return watch.wait(30.0)

        assert woken(Topic.jobs(), lambda: store.enqueue_job(s.id, "ocr", now=1.0))
        first = store.claim_job("w", lease_seconds=60, now=2.0)
        assert first is not None
        assert woken(Topic.jobs(), lambda: store.release_job(first.id, "w"))
        again = store.claim_job("w", lease_seconds=60, now=3.0)
        assert again is not None
        assert woken(
            Topic.jobs(),
            lambda: store.fail_job(
                again.id, "w", "boom", now=4.0, max_attempts=3, backoff=Backoff(base=1.0)
            ),
        )
        assert woken(Topic.stats(s.id), lambda: store.write_stats(RecordingStats(s.id)))
        assert woken(Topic.session(s.id), lambda: store.set_stage_status(s.id, "ocr", "running"))
        paused = replace(s, status="paused", paused_at=utc_now())
        assert woken(Topic.session(), lambda: store.update_session(paused))
        assert woken(Topic.session(), lambda: stored_session(store, "another"))

    def test_a_change_rolled_back_is_not_announced(self, store: Store) -> None:
        s = stored_session(store)
        with store.watch([Topic.commands(s.id)]) as watch:
            with pytest.raises(RuntimeError), store.transaction():
                store.push_command(s.id, "end")
                raise RuntimeError("undo")
            assert watch.wait(1.0) is False
        assert store.take_commands(s.id) == []

    def test_the_next_job_due(self, store: Store) -> None:
        s, other = stored_session(store), stored_session(store)
        assert store.next_due() is None
        store.enqueue_job(s.id, "ocr", now=50.0)
        store.enqueue_job(other.id, "transcribe", now=40.0)
        assert store.next_due() == 40.0
        assert store.next_due(["ocr"]) == 50.0
        assert store.next_due([]) is None
        job = store.claim_job("w", lease_seconds=5, now=60.0, kinds=["transcribe"])
        assert job is not None
        assert store.next_due(["transcribe"]) == 65.0  # its lease runs out then
        store.complete_job(job.id, "w", now=61.0)
        assert store.next_due(["transcribe"]) is None

    @pytest.mark.parametrize(
        "topic", [("jobs", "s"), ("commands", None), ("stats", ""), ("everything", None)]
    )
    def test_a_topic_must_make_sense(self, topic: tuple[str, str | None]) -> None:
        with pytest.raises(InvalidInput):
            Topic(*topic)  # type: ignore[arg-type]

    def test_a_closed_store_gives_no_watch(self, store_backend: StoreBackend) -> None:
        closed = store_backend.open()
        closed.close()
        with pytest.raises(StorageError):
            closed.watch([Topic.jobs()])
