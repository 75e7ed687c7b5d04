"""The storage budget (`taskerino gc`) over sessions recorded on Xvfb: oldest media first in
the stated order, live sessions and text untouched, no orphan even when gc is killed."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskerino.errors import InvalidInput, NotFound
from taskerino.models import Session, SessionConfig
from taskerino.rules import parse_bytes
from taskerino.sessions import StartRequest, Taskerino
from taskerino.virtual import VirtualDisplay

from .cli_helpers import run, run_json
from .enriched import Enriched

COLOURS = ("blue", "green", "red", "yellow")


def request(colour: str) -> StartRequest:
    config = SessionConfig(
        screenshot_interval=1.0,
        video=True,
        sources=[f"test:{colour}"],
        fps=5,
        width=320,
        height=180,
    )
    return StartRequest(name=f"session {colour}", config=config)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, xdisplay: VirtualDisplay) -> Path:
    """Four completed sessions with screenshots, video chunks and a full video each,
    started one after the other (oldest: blue). Copy before changing."""
    home = tmp_path_factory.mktemp("budget") / "home"
    home.mkdir(mode=0o700)
    with Taskerino.open(home) as library:
        ids = []
        for colour in COLOURS:
            ids.append(library.start(request(colour)).id)
            time.sleep(0.3)
        time.sleep(2.0)
        for sid in ids:
            library.end(sid)
        library.add_note(ids[0], "keep this note", media_offset=1.0)
    return home


def copy(recorded: Path, to: Path) -> Path:
    shutil.copytree(recorded, to)
    return to


def oldest_first(library: Taskerino) -> list[Session]:
    return [library.get(s.id) for s in reversed(library.list_sessions())]


def size(library: Taskerino, attachment_ids: list[str]) -> int:
    return sum(library.attachment(a).size for a in set(attachment_ids))


def chunk_ids(session: Session) -> list[str]:
    assert session.video is not None
    return [c.attachment_id for c in session.video.chunks]


def full_id(session: Session) -> str:
    assert session.video is not None and session.video.full_video_attachment_id
    return session.video.full_video_attachment_id


def blob_exists(library: Taskerino, attachment_id: str) -> bool:
    path = library.attachment_path(library.attachment(attachment_id))
    return path is not None and path.is_file()


def test_parse_bytes_suffixes_and_bad_values() -> None:
    assert parse_bytes("500M") == 500 << 20
    assert parse_bytes("2G") == 2 << 30
    assert parse_bytes("1.5GiB") == 3 << 29
    assert parse_bytes(" 1234 ") == 1234
    for bad in ("", "-1", "2X", "1e9", "G", True):
        with pytest.raises(InvalidInput, match="number of bytes"):
            parse_bytes(bad)


def test_oldest_media_go_first_in_the_stated_order(
    recorded: Path, tmp_path: Path, xdisplay: VirtualDisplay
) -> None:
    home = copy(recorded, tmp_path / "home")
    with Taskerino.open(home) as library:
        sessions = oldest_first(library)
        assert [s.name for s in sessions] == [f"session {c}" for c in COLOURS]
        assert all(s.video and s.video.chunks and s.screenshots for s in sessions)
        live = library.start(request("cyan"))
        time.sleep(1.5)
        total = library.gc(10**15, dry_run=True).before
        chunks = sum(size(library, chunk_ids(s)) for s in sessions)
        first_full = size(library, [full_id(sessions[0])])
        size_before = {s.id: size(library, chunk_ids(s)) for s in sessions}
        # Over by one byte once every chunk and the oldest full video are gone: the next
        # oldest full video goes too, and no screenshot.
        budget = total - chunks - first_full - 1

        planned = library.gc(budget, dry_run=True)
        assert all(not s.recycled for s in oldest_first(library))  # a dry run removes nothing
        report = library.gc(budget)
        expected = [(s.id, "video_chunks") for s in sessions] + [
            (sessions[0].id, "full_video"),
            (sessions[1].id, "full_video"),
        ]
        assert [(r.session_id, r.kind) for r in report.removals] == expected
        assert [(r.session_id, r.kind) for r in planned.removals] == expected
        assert report.within_budget and report.after <= budget

        after = {s.id: s for s in oldest_first(library)}
        for i, s in enumerate(sessions):
            now = after[s.id]
            assert now.video is not None and now.video.chunks == []
            assert all(row_gone(library, a) for a in chunk_ids(s))
            kept_full = now.video.full_video_attachment_id
            assert (kept_full is None) == (i < 2)
            assert len(now.screenshots) == len(s.screenshots)
            kinds = [r.kind for r in now.recycled]
            assert kinds == (["video_chunks", "full_video"] if i < 2 else ["video_chunks"])
            assert now.recycled[0].count == len(chunk_ids(s))
            assert now.recycled[0].bytes == size_before[s.id]
        assert after[sessions[0].id].context_items[0].content == "keep this note"

        # Nothing fits: everything that may go goes, the live session keeps all its media.
        report = library.gc(0)
        assert not report.within_budget
        assert [r.kind for r in report.removals] == ["full_video"] * 2 + ["screenshots"] * 4
        for s in oldest_first(library):
            if s.id == live.id:
                continue
            assert s.screenshots == [] and s.video and s.video.full_video_attachment_id is None
        live_now = library.get(live.id)
        assert live_now.status == "active" and live_now.recycled == []
        assert live_now.screenshots
        assert all(blob_exists(library, a.attachment_id) for a in live_now.screenshots)
        assert library.doctor(deep=True) == []
        # Its video (staged while it records) is whole once it ends.
        ended = library.end(live.id)
        assert ended.recycled == [] and len(ended.screenshots) >= len(live_now.screenshots)
        assert blob_exists(library, full_id(ended))
        assert all(blob_exists(library, a) for a in chunk_ids(ended))

    shown = run(home, "sessions", "show", sessions[0].id)
    assert shown.returncode == 0, shown.stderr
    assert "removed by the storage budget" in shown.stdout
    assert "video chunk(s)" in shown.stdout and "screenshot(s)" in shown.stdout
    doctor = run_json(home, "doctor")
    assert doctor == {"ok": True, "problems": []}


def row_gone(library: Taskerino, attachment_id: str) -> bool:
    try:
        library.attachment(attachment_id)
    except NotFound:
        return True
    return False


def test_text_chapters_and_thumbnails_stay(enriched: Enriched, tmp_path: Path) -> None:
    home = enriched.copy(tmp_path / "home")
    sid = enriched.session_id
    with Taskerino.open(home) as library:
        library.add_note(sid, "a note that stays")
        before = library.get(sid)
        assert before.transcript and before.ocr and before.video and before.video.chapters
        thumbnails = [c.thumbnail_attachment_id for c in before.video.chapters]
        report = library.gc(0)
        assert {r.kind for r in report.removals} == {"video_chunks", "full_video", "screenshots"}
        after = library.get(sid)
        assert after.transcript == before.transcript
        assert after.context_items == before.context_items
        assert after.video is not None and after.video.chapters == before.video.chapters
        assert after.audio_attachment_id == before.audio_attachment_id
        assert [o.text for o in after.ocr] == [o.text for o in before.ocr]
        assert all(o.screenshot_id is None for o in after.ocr)  # their screenshots went
        assert all(blob_exists(library, t) for t in thumbnails if t)
        assert library.search("invoice", session_id=sid)  # OCR and transcript still found
        assert after.screenshots == [] and after.video.full_video_attachment_id is None
        assert library.doctor(deep=True) == []


def test_budget_setting_applies_after_a_session_ends(
    recorded: Path, tmp_path: Path, xdisplay: VirtualDisplay
) -> None:
    home = copy(recorded, tmp_path / "home")
    shown = run(home, "budget")
    assert shown.returncode == 0 and "no storage budget" in shown.stdout
    assert run(home, "budget", "1K").returncode == 0
    assert "1024 bytes" in run(home, "budget").stdout
    with Taskerino.open(home) as library:
        oldest = oldest_first(library)[0].id
        sid = library.start(request("magenta")).id
        time.sleep(1.5)
        library.end(sid)
        assert library.get(oldest).recycled  # the budget ran when the session ended
        assert library.doctor() == []
    assert run(home, "budget", "off").returncode == 0
    assert "no storage budget" in run(home, "budget").stdout


def test_cli_gc_json_dry_run_and_bad_input(recorded: Path, tmp_path: Path) -> None:
    home = copy(recorded, tmp_path / "home")
    planned = run_json(home, "gc", "--max-storage", "0", "--dry-run")
    assert planned["dry_run"] and planned["removals"]
    with Taskerino.open(home) as library:
        assert all(s.recycled == [] for s in oldest_first(library))
    bad = run(home, "gc", "--max-storage", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("error: storage budget must be")
    assert "Traceback" not in bad.stderr
    unset = run(home, "gc")
    assert unset.returncode == 2 and "no storage budget" in unset.stderr
    done = run_json(home, "gc", "--max-storage", "0")
    assert [r["kind"] for r in done["removals"]] == ["video_chunks"] * 4 + ["full_video"] * 4 + [
        "screenshots"
    ] * 4
    # No audio was recorded: every byte may go, and the plan said how many exactly
    # (screenshots of the same screen share their file: counted once).
    assert done["after"] == 0 and done["within_budget"]
    assert [(r["kind"], r["bytes"]) for r in done["removals"]] == [
        (r["kind"], r["bytes"]) for r in planned["removals"]
    ]


GC = textwrap.dedent(
    """
    import sys, time
    from taskerino.sessions import Taskerino
    with Taskerino.open(sys.argv[1]) as library:
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.monotonic()
        library.gc(0)
        print("done", time.monotonic() - started, flush=True)
    """
)


def gc_process(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", GC, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_gc_killed_at_random_moments_leaves_no_orphan(recorded: Path, tmp_path: Path) -> None:
    # How long a whole gc takes here: the kills land within it.
    proc = gc_process(copy(recorded, tmp_path / "timing"))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    seconds = float(proc.stdout.readline().split()[1])
    finish(proc)
    rng = random.Random(20261125)
    kills, partial = 0, 0
    # At least 10 kills, and (the moments being random) until two landed between removals.
    for attempt in range(40):
        if kills >= 10 and partial >= 2:
            break
        home = copy(recorded, tmp_path / f"kill-{attempt}")
        proc = gc_process(home)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(rng.uniform(0.0, seconds))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finish(proc)
        # Opening the library (any command) sweeps what the dead gc left in flight.
        with Taskerino.open(home) as library:
            assert library.doctor(deep=True) == [], f"after a kill at attempt {attempt}"
            sessions = oldest_first(library)
            for s in sessions:
                for a in library_attachments(library, s):
                    assert blob_exists(library, a), f"dangling row {a}"
            removed = sum(len(s.recycled) for s in sessions)
            partial += 0 < removed < 12
            # A gc run again finishes the job.
            report = library.gc(0)
            assert all(s.screenshots == [] for s in oldest_first(library))
            assert report.after < report.before or removed == 12
            assert library.doctor() == []
    assert kills >= 10
    assert partial >= 1, "no kill landed between two removals"


def finish(proc: subprocess.Popen[str]) -> None:
    proc.wait(timeout=60)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def library_attachments(library: Taskerino, session: Session) -> Iterator[str]:
    yield from (s.attachment_id for s in session.screenshots)
    if session.video is not None:
        yield from chunk_ids(session)
        if session.video.full_video_attachment_id:
            yield session.video.full_video_attachment_id


def test_gc_json_shape(recorded: Path, tmp_path: Path) -> None:
    home = copy(recorded, tmp_path / "home")
    data = json.loads(run(home, "gc", "--max-storage", "1T", "--json").stdout)
    assert data["removals"] == [] and data["within_budget"] and data["before"] == data["after"]
