"""Recording into S3 (`--media s3://…`, SQLite store): real capture on Xvfb and
PulseAudio, media uploaded as it closes, against moto's S3 server mode (the stand-in for
S3); the web app serving it with ranges; and an S3 outage of 30 s in the middle of a
recording."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from playwright.sync_api import sync_playwright
from starlette.testclient import TestClient

import taskerino.recording.video as video_module
from taskerino.models import Session, SessionConfig, SessionVideoChunk, new_id, parse_time
from taskerino.recording.base import MediaClock, RecordingContext
from taskerino.recording.video import VideoRecorder
from taskerino.sessions import StartRequest, Taskerino
from taskerino.sessions.configure import configure
from taskerino.sessions.recorders import build_recorders
from taskerino.store import open_blob_store, open_store
from taskerino.store.media import MediaLibrary
from taskerino.store.uploads import Uploads
from taskerino.virtual import VirtualAudio, VirtualDisplay
from taskerino.web import create_app
from taskerino.web.security import allowed_hosts, load_token

from .cli_helpers import TASKERINO, run, run_json, wait_for_session
from .s3_server import Gate, MotoS3, object_keys
from .test_audio_sessions import sound  # noqa: F401  (silence played all along)
from .test_web_browser import CHROMIUM, FLAGS, logged_in, move_to, open_session
from .web_helpers import Served

PORT = 8742
PREFIX = "team/media"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def keys_of(session: dict[str, Any]) -> set[str]:
    return {f"{PREFIX}/{a['hash'][:2]}/{a['hash']}" for a in session["attachments"].values()}


@pytest.fixture(scope="module")
def bucket(s3_server: MotoS3) -> Iterator[str]:
    with s3_server.bucket() as name:
        yield name


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
    bucket: str,
    xdisplay: VirtualDisplay,
    sound: VirtualAudio,  # noqa: F811
) -> tuple[Path, dict[str, Any]]:
    """A session recorded by the CLI into the bucket: screenshots, video, system audio."""
    home = tmp_path_factory.mktemp("s3-home")
    result = run(
        home,
        "--media",
        f"s3://{bucket}/{PREFIX}",
        "record",
        "--duration",
        "4",
        "--screenshot-interval",
        "1",
        "--video",
        "--source",
        "test:blue",
        "--fps",
        "10",
        "--size",
        "640x360",
        "--system-audio",
        "--json",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return home, json.loads(result.stdout)


def test_a_recording_ends_with_every_file_in_the_bucket(
    s3_server: MotoS3, bucket: str, recorded: tuple[Path, dict[str, Any]]
) -> None:
    home, session = recorded
    assert session["status"] == "completed"
    assert len(session["screenshots"]) >= 3
    assert session["audio_segments"] and session["audio_attachment_id"]
    video = session["video"]
    assert video["chunking_status"] == "complete" and video["chunks"]
    assert video["full_video_attachment_id"] in session["attachments"]
    # Every attachment's bytes are objects in the bucket, none on this disk.
    assert all(a["path"] is None for a in session["attachments"].values())
    assert keys_of(session) <= set(object_keys(s3_server.client(), bucket))
    assert not list((home / "blobs").glob("??/*"))
    assert not (home / "staging" / session["id"]).exists()
    doctor = run_json(home, "--media", f"s3://{bucket}/{PREFIX}", "doctor", "--deep")
    assert doctor == {"ok": True, "problems": []}


@pytest.fixture(scope="module")
def client(bucket: str, recorded: tuple[Path, dict[str, Any]]) -> Iterator[TestClient]:
    home, _ = recorded
    library = Taskerino.open(home, media=f"s3://{bucket}/{PREFIX}")
    token = load_token(library.home)
    app = create_app(library, token=token, port=PORT, hosts=allowed_hosts("127.0.0.1", PORT))
    with TestClient(app, base_url=f"http://127.0.0.1:{PORT}") as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c
    library.close()


def test_the_web_app_serves_s3_media_with_ranges(
    s3_server: MotoS3, bucket: str, recorded: tuple[Path, dict[str, Any]], client: TestClient
) -> None:
    _, session = recorded
    video_id = session["video"]["full_video_attachment_id"]
    digest = session["attachments"][video_id]["hash"]
    stored = s3_server.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{digest[:2]}/{digest}")
    content = stored["Body"].read()

    whole = client.get(f"/api/media/{video_id}")
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/api/media/{video_id}", headers={"Range": "bytes=1000-4999"})
    assert part.status_code == 206 and part.content == content[1000:5000]
    assert part.headers["content-range"] == f"bytes 1000-4999/{len(content)}"
    assert part.headers["content-length"] == "4000"
    tail = client.get(f"/api/media/{video_id}", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == content[-100:]
    head = client.head(f"/api/media/{video_id}", headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "10"
    outside = client.get(f"/api/media/{video_id}", headers={"Range": f"bytes={len(content)}-"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == f"bytes */{len(content)}"
    malformed = client.get(f"/api/media/{video_id}", headers={"Range": "lines=1-2"})
    assert malformed.status_code == 400

    # What it serves is the real recording: H.264 video with the audio muxed in.
    with av.open(io.BytesIO(whole.content), mode="r") as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio
        frames = len(list(container.decode(video=0)))
    assert frames >= 10


@pytest.mark.usefixtures("xdisplay")
def test_remote_media_rolls_video_chunks_every_minute_local_media_every_five(
    s3_bucket: str, tmp_path: Path
) -> None:
    """The recorders a configuration gets, prepared the way a recording prepares them."""
    config = configure(SessionConfig(video=True, sources=["test:blue"], width=320, height=240))
    store = open_store("sqlite://" + str(tmp_path / "t.db"), tmp_path / "t.db")
    media = {
        "s3": open_blob_store(f"s3://{s3_bucket}/{PREFIX}", tmp_path),
        "folder": open_blob_store("file://" + str(tmp_path / "blobs"), tmp_path),
    }
    lengths = {}
    try:
        for where, blobs in media.items():
            (video,) = [r for r in build_recorders(config) if isinstance(r, VideoRecorder)]
            staging = tmp_path / where
            staging.mkdir()
            context = RecordingContext(
                new_id(), store, MediaLibrary(store, blobs), MediaClock(), staging,
                lambda message: None, Uploads(MediaLibrary(store, blobs)),
            )  # fmt: skip
            video.prepare(context)
            lengths[where] = video.chunk_seconds
            video.stop()
    finally:
        store.close()
    assert lengths == {"s3": 60.0, "folder": 300.0}


@pytest.mark.usefixtures("xdisplay")
def test_a_team_recording_uploads_each_video_chunk_as_it_closes(
    s3_server: MotoS3,
    s3_bucket: str,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks roll at the remote length (2 s here instead of 60 s, to be quick) and each is
    in the bucket, with its row, while the recording goes on."""
    monkeypatch.setattr(video_module, "REMOTE_CHUNK_SECONDS", 2.0)
    url = f"s3://{s3_bucket}/{PREFIX}"
    client = s3_server.client()
    with Taskerino.open(home, media=url) as library:
        config = SessionConfig(
            screenshots=False, video=True, sources=["test:blue"], fps=10, width=320, height=240
        )
        sid = library.start(StartRequest(name="chunks", config=config)).id

        def stored_chunks() -> list[SessionVideoChunk]:
            video = library.get(sid).video
            return video.chunks if video is not None else []

        wait_for(lambda: len(stored_chunks()) >= 3, 120, "three chunks stored while recording")
        during = library.get(sid)
        keys = set(object_keys(client, s3_bucket))
        assert during.video is not None
        closed = during.video.chunks
        hashes = [library.attachment(chunk.attachment_id).hash for chunk in closed]
        session = library.end(sid)
    assert during.status == "active"
    # Each chunk's row commits after its object is in the bucket.
    assert {f"{PREFIX}/{h[:2]}/{h}" for h in hashes} <= keys
    for chunk in closed:
        assert chunk.end_offset - chunk.start_offset == pytest.approx(2.0, abs=0.5)
    assert session.status == "completed" and session.video is not None
    assert len(session.video.chunks) >= len(closed)
    with Taskerino.open(home, media=url) as again:
        assert again.doctor() == []


@dataclass
class Outage:
    """A way for the bucket to be away: `begin` and `end` it; `server` and `bucket` are
    where the objects are."""

    server: MotoS3
    bucket: str
    begin: Callable[[], None]
    end: Callable[[], None]


@contextmanager
def outage_of(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Outage]:
    if kind == "cut":
        # The path to the server is cut: connections refused and reset at once.
        server: MotoS3 = request.getfixturevalue("s3_server")
        gate = Gate(server.port)
        gate.open()
        monkeypatch.setenv("AWS_ENDPOINT_URL", gate.endpoint)
        try:
            yield Outage(server, request.getfixturevalue("s3_bucket"), gate.close, gate.open)
        finally:
            gate.close()
        return
    # The server itself stops answering (SIGSTOP): connections hang until the client's
    # timeouts give up. A server of its own, so that no other test sees it frozen.
    server = MotoS3()
    server.start()
    for name, value in server.env.items():  # its endpoint, the dummy credentials
        monkeypatch.setenv(name, value)
    try:
        with server.bucket() as bucket:
            yield Outage(server, bucket, server.freeze, server.thaw)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["frozen", "cut"])
def test_an_s3_outage_during_a_recording_loses_nothing(
    kind: str,
    home: Path,
    xdisplay: VirtualDisplay,
    sound: VirtualAudio,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The bucket is away for 30 s — the server frozen, or the way to it cut: the recorder
    keeps recording into staging, reports the pending uploads, retries, catches up, and
    ends with everything attached."""
    with outage_of(kind, request, monkeypatch) as outage:
        url = f"s3://{outage.bucket}/{PREFIX}"
        library = Taskerino.open(home, media=url)
        away = False
        try:
            config = SessionConfig(
                screenshot_interval=1.0,
                video=True,
                sources=["test:blue"],
                fps=10,
                width=320,
                height=240,
                system_audio=True,
            )
            sid = library.start(StartRequest(name="outage", config=config)).id
            wait_for(lambda: len(library.get(sid).screenshots) >= 2, 60, "first screenshots")

            outage.begin()
            away = True
            cut = time.monotonic()
            wait_for(lambda: library.stats(sid).uploads_pending >= 3, 60, "uploads queue up")
            frames = library.stats(sid).frames_captured
            time.sleep(max(0.0, 30 - (time.monotonic() - cut)))
            # A frozen server fails an upload once the client's timeouts and retries ran
            # out: well within a minute (boto3's defaults took five).
            wait_for(lambda: library.stats(sid).uploads_failed >= 1, 60, "a failed upload")
            during = library.stats(sid)
            assert during.state == "recording"
            assert during.frames_captured > frames, "capture goes on while the bucket is away"
            # Ending while the bucket is still away waits for the uploads, retrying.
            ended: list[Session] = []
            ending = threading.Thread(target=lambda: ended.append(library.end(sid)))
            ending.start()
            ending.join(3.0)
            assert ending.is_alive(), "the end cannot complete before its media is uploaded"
            assert library.stats(sid).uploads_pending >= 1
            outage.end()
            away = False
            ending.join(240)
            assert not ending.is_alive(), "uploads did not catch up"
            session = ended[0]
        finally:
            if away:
                outage.end()
            library.close()

        assert session.status == "completed"
        # A screenshot a second all along: none went missing during the outage.
        offsets = [s.media_offset for s in session.screenshots]
        assert offsets[-1] >= 30
        assert max(b - a for a, b in itertools.pairwise(offsets)) < 5.0  # 1 s apart, loaded
        # Audio segments follow each other without a hole.
        segments = session.audio_segments
        assert len(segments) >= 3
        for before, after in itertools.pairwise(segments):
            assert after.media_offset == pytest.approx(
                before.media_offset + before.duration, abs=0.05
            )
        assert session.video is not None and session.video.chunking_status == "complete"

        monkeypatch.setenv("AWS_ENDPOINT_URL", outage.server.endpoint)  # straight to it
        with Taskerino.open(home, media=url) as again:
            assert again.doctor() == []
        shown = run_json(home, "--media", url, "sessions", "show", sid)
        video = session.video
        referenced = {
            *(s.attachment_id for s in session.screenshots),
            *(a.attachment_id for a in segments),
            *(c.attachment_id for c in video.chunks),
            video.full_video_attachment_id,
            session.audio_attachment_id,
        }
        assert referenced <= set(shown["attachments"])
        assert keys_of(shown) <= set(object_keys(outage.server.client(), outage.bucket))
        assert not (home / "staging" / sid).exists()


def test_kill_9_of_a_recorder_into_s3_is_recovered_with_its_uploaded_media(
    s3_server: MotoS3,
    s3_bucket: str,
    home: Path,
    xdisplay: VirtualDisplay,
    sound: VirtualAudio,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recorder dies while the bucket is away, some media uploaded and some waiting in
    staging: the next command's recovery fetches what reached the bucket, stores what
    waited, and attaches it all; nothing in the bucket is left without a row."""
    url = f"s3://{s3_bucket}/{PREFIX}"
    monkeypatch.setenv("TASKERINO_MEDIA", url)
    gate = Gate(s3_server.port)
    gate.open()
    proc = subprocess.Popen(
        [
            *TASKERINO,
            "--home",
            str(home),
            "record",
            "--screenshot-interval",
            "1",
            "--system-audio",
            "--video",
            "--source",
            "test:red",
            "--fps",
            "10",
            "--size",
            "320x240",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": gate.endpoint},  # the recorder's way only
    )
    try:
        row = wait_for_session(home, timeout=60)

        def show() -> dict[str, Any]:
            shown: dict[str, Any] = run_json(home, "sessions", "show", row["id"])
            return shown

        wait_for(
            lambda: bool(show()["audio_segments"]) and len(show()["screenshots"]) >= 3,
            90,
            "a first audio segment and screenshots uploaded",
        )
        gate.close()
        wait_for(
            lambda: run_json(home, "stats", row["id"])["uploads_pending"] >= 3,
            60,
            "screenshots waiting for the bucket",
        )
    finally:
        proc.kill()
        killed_at = time.time()
        _, err = proc.communicate()
        gate.close()
    shown = run_json(home, "sessions", "show", row["id"])
    assert shown["status"] == "interrupted", err
    # The screenshots that waited for the bucket were stored by recovery: no hole.
    offsets = [s["media_offset"] for s in shown["screenshots"]]
    recorded = killed_at - parse_time(row["start_time"]).timestamp()
    assert offsets[-1] >= recorded - 6.0, (offsets, recorded)
    assert max(b - a for a, b in itertools.pairwise(offsets)) < 5.0  # 1 s apart, under load
    assert shown["video"]["chunking_status"] == "complete"
    assert shown["audio_attachment_id"] in shown["attachments"]
    assert all(a["path"] is None for a in shown["attachments"].values())
    keys = set(object_keys(s3_server.client(), s3_bucket))
    assert keys_of(shown) <= keys
    assert not [k for k in keys if "/.tmp/" in k], "no multipart upload marker left"
    video = shown["attachments"][shown["video"]["full_video_attachment_id"]]
    with Taskerino.open(home, media=url) as library:
        with library.open_media(library.attachment(video["id"])) as f:
            content = f.read()
        assert library.doctor() == []
    with av.open(io.BytesIO(content), mode="r") as container:
        assert len(container.streams.audio) == 1
        assert len(list(container.decode(video=0))) >= 10
    assert not (home / "staging" / row["id"]).exists()


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium")
def test_the_player_seeks_in_a_video_served_from_s3(
    s3_server: MotoS3,
    s3_bucket: str,
    home: Path,
    xdisplay: VirtualDisplay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`taskerino serve` over S3 media, in real Chromium: the video plays and seeks
    (Chromium seeks by asking for byte ranges)."""
    monkeypatch.setenv("TASKERINO_MEDIA", f"s3://{s3_bucket}/{PREFIX}")
    served = Served(home, "--port", "0")
    try:
        asked = {
            "name": "From the bucket",
            "screenshots": False,
            "video": True,
            "sources": ["test:blue"],
            "fps": 10,
            "size": "640x360",
            "duration": 6,
        }
        session = served.wait_completed(served.api("POST", "/api/sessions", asked)["id"])
        assert keys_of(session) <= set(object_keys(s3_server.client(), s3_bucket))
        assert not list((home / "blobs").glob("??/*"))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                for page in logged_in(browser, served):
                    open_session(page, served, session["id"])
                    duration = float(page.evaluate("document.getElementById('player').duration"))
                    assert duration == pytest.approx(session["video"]["duration"], abs=0.5)
                    move_to(page, 4.0)
                    move_to(page, 1.0)
            finally:
                browser.close()
    finally:
        status, _, err = served.stop()
    assert status == 0, err


def test_export_of_a_session_in_s3(
    bucket: str, recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    home, session = recorded
    out = tmp_path / "out"
    done = run(
        home, "--media", f"s3://{bucket}/{PREFIX}", "export", session["id"], "--to", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert len(list((out / "screenshots").iterdir())) == len(session["screenshots"])
    with av.open(str(out / "video.mp4"), mode="r") as container:
        assert container.streams.audio
        assert len(list(container.decode(video=0))) >= 10


def test_gc_removes_objects_from_the_bucket_without_an_orphan(
    s3_server: MotoS3, bucket: str, recorded: tuple[Path, dict[str, Any]]
) -> None:
    """Last in this module: it removes the recorded session's media."""
    home, _ = recorded
    url = f"s3://{bucket}/{PREFIX}"
    before = set(object_keys(s3_server.client(), bucket))
    done = run(home, "--media", url, "gc", "--max-storage", "1K", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removals"]
    after = set(object_keys(s3_server.client(), bucket))
    assert after < before
    assert run_json(home, "--media", url, "doctor") == {"ok": True, "problems": []}
