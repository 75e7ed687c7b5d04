"""The Store contract (see `taskerino.store.base`), run against every back end in conftest."""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import replace
from itertools import count

import pytest

from taskerino.errors import InvalidInput, NotFound, StorageError
from taskerino.models import (
    Attachment,
    ContextItem,
    RecordingStats,
    Session,
    SessionAudioSegment,
    SessionConfig,
    SessionScreenshot,
    SessionVideo,
    SessionVideoChunk,
    new_id,
)
from taskerino.process import ProcessOwner, current_owner
from taskerino.store import Store
from taskerino.store.base import BlobIntent

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
            enrichment={"ocr": "done"},
        )
        store.create_session(session)
        assert store.get_session(session.id) == session

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
            enrichment={"ocr": "failed: no tesseract"},
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
