"""The command-line contract of spec §7, run as real subprocesses."""

from __future__ import annotations

import json
import os
import pty
import random
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from taskerino.cli import live_line
from taskerino.models import RecordingStats
from taskerino.virtual import VirtualDisplay

from .cli_helpers import TASKERINO, blob_files, run, run_json, start, wait_for_session

pytestmark = pytest.mark.usefixtures("xdisplay")


def test_record_json_and_show(home: Path) -> None:
    result = run(
        home,
        "record",
        "--name",
        "demo",
        "--description",
        "d",
        "--duration",
        "2",
        "--screenshot-interval",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    ended = json.loads(result.stdout)
    assert ended["status"] == "completed" and ended["name"] == "demo"
    assert 1.8 <= ended["total_duration"] <= 4.0
    assert len(ended["screenshots"]) >= 2
    for attachment in ended["attachments"].values():
        assert Path(attachment["path"]).is_file()
    rows = run_json(home, "sessions", "list")
    assert len(rows) == 1
    assert set(rows[0]) >= {
        "id",
        "name",
        "status",
        "start_time",
        "end_time",
        "total_duration",
        "screenshot_count",
        "audio_segment_count",
        "has_video",
    }
    assert rows[0]["screenshot_count"] == len(ended["screenshots"])
    assert rows[0]["has_video"] is False
    shown = run_json(home, "sessions", "show", ended["id"])
    assert shown == ended
    assert run_json(home, "doctor") == {"ok": True, "problems": []}
    human = run(home, "sessions", "show", ended["id"])
    assert "demo" in human.stdout and "[completed]" in human.stdout


def test_sources_lists_displays_and_windows(home: Path) -> None:
    data = run_json(home, "sources")
    assert [(d["id"], d["width"], d["height"]) for d in data["displays"]] == [
        ("display:1", 1920, 1080),
        ("display:2", 1280, 720),
    ]
    assert {"id", "name", "width", "height", "x", "y", "primary"} <= set(data["displays"][0])
    assert isinstance(data["windows"], list)


@pytest.mark.parametrize(
    "args",
    [
        ["--no-screenshots"],
        ["--duration", "-1"],
        ["--duration", "abc"],
        ["--screenshot-interval", "0"],
        ["--screenshot-interval", "x"],
        ["--video", "--source", "display:abc"],
        ["--video", "--source", "display:0"],
        ["--video", "--source", "display:99"],
        ["--video", "--source", "window:zz"],
        ["--video", *[a for i in range(5) for a in ("--source", f"test:s{i}")]],
        ["--video", "--source", "test:a", "--source", "test:b", "--compositor", "passthrough"],
        ["--video", "--compositor", "mosaic"],
        ["--video", "--fps", "0"],
        ["--video", "--fps", "61"],
        ["--video", "--fps", "ten"],
        ["--video", "--size", "641x480"],
        ["--video", "--size", "0x480"],
        ["--video", "--size", "-640x480"],
        ["--video", "--size", "7682x4320"],
        ["--video", "--size", "big"],
        ["--balance", "101", "--system-audio"],
        ["--unknown-flag"],
    ],
)
def test_bad_input_is_refused_before_anything_starts(home: Path, args: list[str]) -> None:
    result = run(home, "record", "--duration", "1", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert run_json(home, "sessions", "list") == []
    assert blob_files(home) == set()


def test_missing_or_unwritable_home(tmp_path: Path) -> None:
    result = run(tmp_path / "nope", "sessions", "list")
    assert result.returncode == 2 and result.stderr.startswith("error: data folder")
    # /proc exists but refuses new files, even to root.
    result = run(Path("/proc"), "sessions", "list")
    assert result.returncode == 2 and "not writable" in result.stderr, result.stderr
    env_home = run(
        None, "sessions", "list", "--json", env={"TASKERINO_HOME": str(tmp_path / "nope")}
    )
    assert env_home.returncode == 2


@pytest.mark.parametrize(
    "command",
    [
        ["sessions", "show", "nope"],
        ["sessions", "end", "nope"],
        ["sessions", "pause", "nope"],
        ["stats", "nope"],
    ],
)
def test_unknown_session_id(home: Path, command: list[str]) -> None:
    result = run(home, *command)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no session 'nope'")


def test_steering_from_another_process(home: Path) -> None:
    proc = start(home, "--screenshot-interval", "1", "--json")
    try:
        session = wait_for_session(home)
        sid = session["id"]
        time.sleep(1.0)
        for command, status in (("pause", "paused"), ("resume", "active")):
            t0 = time.monotonic()
            result = run(home, "sessions", command, sid)
            assert result.returncode == 0, result.stderr
            assert time.monotonic() - t0 < 3.0  # includes the start of the CLI
            assert run_json(home, "sessions", "show", sid)["status"] == status
        stats = run_json(home, "stats", sid)
        assert stats["session_id"] == sid and stats["state"] in ("recording", "paused")
        result = run(home, "sessions", "end", sid)
        assert result.returncode == 0 and "completed" in result.stdout
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert json.loads(out)["status"] == "completed"
        ended = run_json(home, "sessions", "show", sid)
        assert ended["total_paused"] > 0
        assert run_json(home, "stats", sid)["state"] == "stopped"
        again = run(home, "sessions", "end", sid)
        assert again.returncode == 0
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_cleanly(home: Path, sig: signal.Signals) -> None:
    proc = start(home, "--screenshot-interval", "1", "--json")
    sid = wait_for_session(home)["id"]
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["id"] == sid
    assert run_json(home, "sessions", "show", sid)["status"] == "completed"


def test_kill_9_at_random_moments_is_recovered(tmp_path: Path, xdisplay: VirtualDisplay) -> None:
    rng = random.Random(1234)
    for attempt in range(20):
        home = tmp_path / f"h{attempt}"
        home.mkdir()
        proc = start(home, "--screenshot-interval", "1")
        # From "the process has just started" to "several screenshots in".
        time.sleep(rng.uniform(0.0, 2.5))
        proc.kill()
        proc.communicate()
        rows = run_json(home, "sessions", "list")
        assert len(rows) <= 1
        if rows:
            assert rows[0]["status"] == "interrupted", rows
            shown = run_json(home, "sessions", "show", rows[0]["id"])
            for shot in shown["screenshots"]:
                assert Path(shown["attachments"][shot["attachment_id"]]["path"]).is_file()
        report = run_json(home, "doctor")
        assert report == {"ok": True, "problems": []}, (attempt, report)
        referenced = set()
        if rows:
            referenced = {
                a["hash"]
                for a in run_json(home, "sessions", "show", rows[0]["id"])["attachments"].values()
            }
        assert blob_files(home) == referenced
        assert not list((home / "blobs" / ".tmp").glob("*")) if (home / "blobs").exists() else True
        assert not (home / "staging").exists() or not any((home / "staging").iterdir())


def _record_on_a_terminal(home: Path, *args: str, timeout: float = 90.0) -> tuple[int, str, str]:
    """`record` with its stderr on a pseudo-terminal, as a person runs it: exit status,
    what the terminal received and stdout."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*TASKERINO, "--home", str(home), "record", *args],
        stdout=subprocess.PIPE,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
    )
    os.close(secondary)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal's other side closed: the process is gone
            break
        if not chunk:
            break
        received += chunk
    os.close(primary)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, received.decode(), out.decode()


def test_live_line_tells_the_truth_on_a_still_screen(home: Path) -> None:
    code, terminal, out = _record_on_a_terminal(
        home, "--video", "--no-screenshots", "--fps", "10", "--duration", "5"
    )
    assert code == 0, terminal
    assert out == ""
    # The live line is rewritten in place (\r); the pty turns "\n" into "\r\n".
    lines = terminal.replace("\r\n", "\n").split("\n")
    updates = [u for u in lines[1].split("\r") if u.strip()]
    assert updates, terminal
    last = updates[-1].replace("\x1b[K", "")
    found = re.search(
        r"frames (\d+)/(\d+) at 10 fps, (\d+) changed, (\d+) dropped .* (\d+) kB on disk", last
    )
    assert found is not None, last
    captured, expected, changed, dropped, kilobytes = map(int, found.groups())
    # A still screen: the ticks are grabbed, almost none changed, yet bytes reach the disk.
    # (Drops are shown as they are: a loaded machine may miss a tick.)
    assert captured >= 10 and captured >= 0.5 * expected, last
    assert 1 <= changed < captured, last
    assert dropped < captured, last
    assert kilobytes > 0, last
    # The end is on lines of its own: the summary, where it is, how to watch it.
    sessions = run_json(home, "sessions", "list")
    sid = sessions[0]["id"]
    assert lines[2].startswith(f"session {sid} completed: "), terminal
    assert lines[3] == f"saved in {home}", terminal
    assert lines[4] == (
        f"watch it: taskerino --home {home} serve, then open http://127.0.0.1:8741/sessions/{sid}"
    ), terminal
    assert lines[5:] == [""], terminal


def test_live_line_shapes() -> None:
    """Video counts frames against the target; audio its seconds and level; sizes scale."""
    video = live_line(
        RecordingStats(
            "s", frames_captured=448, frames_changed=3, frames_dropped=2, drop_rate=0.004,
            target_fps=15, seconds=30.2, bytes_written=1_534_000,
        )
    )  # fmt: skip
    assert video == (
        "recording  0:30  frames 448/453 at 15 fps, 3 changed, 2 dropped (0.4%)  "
        "healthy  1.5 MB on disk"
    )
    audio = live_line(
        RecordingStats(
            "s", state="paused", seconds=3725.0, bytes_written=999,
            audio={"audio_seconds": 3725.0, "audio_level_dbfs": -38.4},
        )
    )  # fmt: skip
    assert audio == "paused     1:02:05  audio 3725 s at -38 dBFS  healthy  1 kB on disk"
