"""The bad day: hostile arguments, damaged files, a stopped recorder, unexpected errors.

Every case runs the real command as a subprocess (or the CLI's entry point in-process for
the error boundary) and asserts what a person sees: the exit status, one `error:` line,
never a traceback, and nothing left behind by a refused command.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .cli_helpers import TASKERINO, blob_files, run, run_json, start, wait_for_session

pytestmark = pytest.mark.usefixtures("xdisplay")


def run_bytes(home: Path, *args: str | bytes) -> subprocess.CompletedProcess[str]:
    """The command with raw byte arguments, as a shell passes them."""
    argv = [os.fsencode(a) for a in [*TASKERINO, "--home", str(home), *args]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def refused(result: subprocess.CompletedProcess[str], home: Path) -> None:
    """Exit 2 with one `error:` line, no traceback, no session and no blob left."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert run_json(home, "sessions", "list") == []
    assert blob_files(home) == set()


@pytest.mark.parametrize(
    "args",
    [
        ["record", "--duration", "1", "--name", b"bad \xff name"],
        ["record", "--duration", "1", "--description", b"\xfe\xfe"],
        ["record", "--duration", "1", "--name", "x" * 1000],
        ["record", "--duration", "1", "--name", "bell\x07"],
        ["record", "--duration", "1", "--screenshot-interval", "1e308"],
        ["record", "--duration", "1e308"],
        ["record", "--duration", "inf"],
        ["record", "--duration", "1", "--fps", "nan", "--video"],
        ["record", "--duration", "1", "--video", "--size", "99999999999x2"],
        ["record", "--duration", "1", "--video", "--source", b"display:\xff"],
        ["sessions", "show", b"\xff\xfe"],
        ["sessions", "show", "../../etc/passwd"],
        ["sessions", "pause", "x" * 500],
        ["stats", "a b"],
        ["sessions", "list", "--query", b"\xff"],
        ["sessions", "list", "--query", "%_" * 50_000],
    ],
)
def test_hostile_arguments_are_refused_clearly(home: Path, args: list[str | bytes]) -> None:
    refused(run_bytes(home, *args), home)


def test_empty_home_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TASKERINO, "--home", "", "sessions", "list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: data folder")
    assert list(tmp_path.iterdir()) == []


ARGUMENT_POOL = [
    "--name",
    "--description",
    "--duration",
    "--screenshot-interval",
    "--video",
    "--source",
    "--compositor",
    "--fps",
    "--size",
    "--balance",
    "--no-screenshots",
    "--json",
    "0",
    "-1",
    "1e308",
    "nan",
    "display:1",
    "display:0",
    "window:0xffffffff",
    "test:a",
    "grid",
    "passthrough",
    "641x480",
    "\udcff",
    "",
    "../x",
    "%",
]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(
        [["record", "--duration", "0"], ["sessions", "list"], ["sessions", "show"], ["stats"]]
    ),
    extra=st.lists(st.sampled_from(ARGUMENT_POOL) | st.text(max_size=12), max_size=6),
)
def test_fuzzed_arguments_never_reach_a_traceback(
    home: Path, command: list[str], extra: list[str]
) -> None:
    blobs_before = blob_files(home)
    result = run_bytes(home, *command, *extra)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1, 2), result.stderr
    if result.returncode != 0:
        assert result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr
    if result.returncode == 2:
        assert blob_files(home) == blobs_before
    # No session is ever left running: a record either refused or ended (duration 0).
    assert all(r["status"] == "completed" for r in run_json(home, "sessions", "list"))


def test_an_unexpected_error_is_one_line_and_a_log_file(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskerino import cli
    from taskerino.sessions import Taskerino

    def broken(self: Taskerino, *args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("something nobody expected")

    monkeypatch.setattr(Taskerino, "list_sessions", broken)
    monkeypatch.setattr(sys, "argv", ["taskerino", "--home", str(home), "sessions", "list"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: unexpected ZeroDivisionError: something nobody expected")
    log = home / "errors.log"
    assert str(log) in err
    assert "Traceback" in log.read_text() and "something nobody expected" in log.read_text()


def freeze_outside_a_write(proc: subprocess.Popen[str], database: Path) -> None:
    """Stop `proc` at a moment it holds no write lock on the database: a recorder frozen
    inside a transaction would lock every other writer out, which is another test."""
    for _ in range(100):
        proc.send_signal(signal.SIGSTOP)
        try:
            probe = sqlite3.connect(database, timeout=0.2)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.rollback()
                return
            finally:
                probe.close()
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
    raise AssertionError("the recorder was always inside a write transaction")


def test_a_pause_that_times_out_is_withdrawn(home: Path) -> None:
    proc = start(home, "--screenshot-interval", "1", "--json")
    try:
        sid = wait_for_session(home)["id"]
        time.sleep(0.5)
        freeze_outside_a_write(proc, home / "taskerino.db")
        result = run(home, "sessions", "pause", sid, timeout=60)
        assert result.returncode == 1, result.stderr
        assert "withdrawn and nothing changed" in result.stderr
        proc.send_signal(signal.SIGCONT)
        time.sleep(1.5)  # several of the recorder's polls: a queued pause would show now
        assert run_json(home, "sessions", "show", sid)["status"] == "active"
        assert run(home, "sessions", "end", sid).returncode == 0
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        proc.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def recorded(home: Path) -> dict[str, object]:
    result = run(
        home,
        "record",
        "--duration",
        "2",
        "--screenshot-interval",
        "1",
        "--video",
        "--source",
        "test:moving",
        "--size",
        "640x360",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    shown: dict[str, object] = run_json(home, "sessions", "show", wait_for_session(home)["id"])
    return shown


def test_doctor_finds_damaged_media(home: Path) -> None:
    session = recorded(home)
    attachments = session["attachments"]
    assert isinstance(attachments, dict)
    by_type = {a["type"]: Path(a["path"]) for a in attachments.values()}
    assert run_json(home, "doctor", "--deep") == {"ok": True, "problems": []}
    # The same size, other bytes: only the deep check can tell.
    image = by_type["image"]
    image.write_bytes(bytes(255 - b for b in image.read_bytes()))
    assert run_json(home, "doctor") == {"ok": True, "problems": []}
    deep = run(home, "doctor", "--deep", "--json")
    assert deep.returncode == 1 and "does not match its SHA-256" in deep.stdout
    # A truncated video is found without reading it.
    video = by_type["video"]
    with video.open("r+b") as f:
        f.truncate(video.stat().st_size // 2)
    quick = run(home, "doctor")
    assert (
        quick.returncode == 1
        and "damaged file" in quick.stdout
        and "bytes, expected" in (quick.stdout)
    )
    assert "Traceback" not in quick.stderr + deep.stderr


def test_a_damaged_database_never_crashes_a_command(home: Path, tmp_path: Path) -> None:
    session = recorded(home)
    database = (home / "taskerino.db").read_bytes()
    rng = random.Random(7)
    for variant in range(12):
        copy = tmp_path / f"copy{variant}"
        shutil.copytree(home, copy)
        data = bytearray(database)
        if variant % 4 == 3:
            data = data[: rng.randrange(100, len(data))]  # truncated
        else:
            for _ in range(rng.randint(1, 40)):
                data[rng.randrange(100, len(data))] = rng.randrange(256)
        (copy / "taskerino.db").write_bytes(bytes(data))
        for wal in copy.glob("taskerino.db-*"):
            wal.unlink()
        for command in (["sessions", "list"], ["sessions", "show", str(session["id"])], ["doctor"]):
            result = run(copy, *command)
            assert "Traceback" not in result.stderr, (variant, command, result.stderr)
            assert result.returncode in (0, 1, 2), (variant, command, result.stderr)
            if result.returncode != 0 and command != ["doctor"]:
                last = (result.stderr.strip().splitlines() or [""])[-1]
                assert last.startswith("error: "), (variant, command, result.stderr)
        # Nothing was overwritten: the damaged file is as it was.
        assert (copy / "taskerino.db").read_bytes() == bytes(data), variant


def test_a_database_that_is_a_folder(home: Path) -> None:
    (home / "taskerino.db").mkdir()
    result = run(home, "sessions", "list")
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and (home / "taskerino.db").is_dir()


def test_recording_into_a_damaged_database_is_refused(home: Path) -> None:
    recorded(home)
    database = home / "taskerino.db"
    with sqlite3.connect(database) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'screenshots'")
        start = (root.fetchone()[0] - 1) * page_size
    db.close()
    data = bytearray(database.read_bytes())
    # Garbage over the screenshots table's page: the file opens, the integrity check fails.
    for i in range(start + 8, start + page_size):
        data[i] = 0x5A
    database.write_bytes(bytes(data))
    assert run(home, "doctor").returncode == 1
    result = run(home, "record", "--duration", "1", "--screenshot-interval", "1")
    assert result.returncode == 1, result.stderr
    assert "database is damaged" in result.stderr and "Traceback" not in result.stderr
    assert database.read_bytes() == bytes(data)


def test_the_data_folder_is_private(tmp_path: Path) -> None:
    home = tmp_path / "library"
    home.mkdir()
    home.chmod(0o755)  # as an older version left it
    (home / "blobs").mkdir(mode=0o755)
    (home / "errors.log").write_text("left by an older version")
    (home / "errors.log").chmod(0o644)
    old_umask = os.umask(0o022)  # a permissive umask, inherited by the commands below
    try:
        first = run(home, "sessions", "list")
        assert first.returncode == 0 and "made the data folder" in first.stderr
        assert "private" in first.stderr and len(first.stderr.strip().splitlines()) == 1
        recorded(home)  # everything a recording writes is private all the same
    finally:
        os.umask(old_umask)
    entries = [home, *home.rglob("*")]
    assert len(entries) > 5
    loose = [(str(p), oct(p.stat().st_mode & 0o777)) for p in entries if p.stat().st_mode & 0o077]
    assert loose == []
    assert run_json(home, "doctor") == {"ok": True, "problems": []}
    (home / "taskerino.db").chmod(0o644)
    report = run(home, "doctor", "--json")
    assert report.returncode == 1 and "readable by others" in report.stdout


def test_a_folder_that_also_holds_other_files_keeps_their_permissions(tmp_path: Path) -> None:
    # Someone's home or project folder named as the data folder: Taskerino's own files are
    # made private, the folder and everything else in it are not Taskerino's to change.
    home = tmp_path / "projects"
    home.mkdir()
    home.chmod(0o755)
    (home / "src").mkdir()
    (home / "src").chmod(0o755)  # chmod: the umask of this process may be private
    (home / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (home / "src" / "main.c").chmod(0o644)
    (home / "blobs").mkdir()
    (home / "blobs").chmod(0o755)
    assert run(home, "sessions", "list").returncode == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "src").stat().st_mode) == 0o755
    assert stat.S_IMODE((home / "src" / "main.c").stat().st_mode) == 0o644
    assert stat.S_IMODE((home / "blobs").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "taskerino.db").stat().st_mode) == 0o600


def test_a_shared_folder_like_tmp_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # sticky and writable by all, as /tmp
    (shared / "someone-elses").write_text("x")
    (shared / "someone-elses").chmod(0o644)
    result = run(shared, "doctor")
    assert result.returncode == 2 and "is shared" in result.stderr
    assert "mkdir -m 700" in result.stderr and "Traceback" not in result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert sorted(p.name for p in shared.iterdir()) == ["someone-elses"]
    assert stat.S_IMODE((shared / "someone-elses").stat().st_mode) == 0o644
