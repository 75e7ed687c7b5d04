"""The `taskerino` command: parse, call the front door, format. No logic of its own.

Every error ends here in one place: an expected one (`TaskerinoError`) is one `error:` line
with exit status 2 (bad input) or 1; anything unexpected is one line naming the log file
that holds its traceback, exit 1. No traceback ever reaches the terminal.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from .errorlog import log_unexpected
from .errors import InvalidInput, NotFound, RecorderError, TaskerinoError
from .rules import (
    EXPORT_FORMATS,
    WEB_PORT,
    check_exclusions,
    check_export_formats,
    check_query,
    check_session_id,
    check_stages,
    parse_bytes,
    parse_concurrency,
    parse_duration,
    parse_port,
    printable,
    record_config,
)

if TYPE_CHECKING:
    from .models import JobState, RecordingStats, SessionStatus
    from .sessions import Taskerino

# The front door (the store, the recorders) and the data model are imported by the commands
# that use them, so that `--help` and a mistyped option answer at once.

STATUSES = ("active", "paused", "completed", "interrupted")
JOB_STATES = ("queued", "running", "done", "failed")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(code)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="taskerino: %(message)s")
    # The connection pool logs each failed reconnect while a database server is away;
    # Taskerino says once what is wrong and what it does about it.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    # Errors raised where nobody can catch them (a callback from C, a finalizer) go to the
    # log file too, never as a traceback on the terminal.
    sys.unraisablehook = _unraisable
    threading.excepthook = _thread_failed
    try:
        cli.main(standalone_mode=False, prog_name="taskerino")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 1)
    except click.ClickException as exc:
        _fail(exc.format_message(), 2)
    except (InvalidInput, NotFound) as exc:
        _fail(str(exc), 2)
    except TaskerinoError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 1)
    except Exception as exc:  # the one boundary for what nobody expected
        where = _log_unexpected(exc)
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (the details are in {where}; "
            "please report them)",
            1,
        )


def run() -> NoReturn:
    """The `taskerino` process: `main`, then exit without the interpreter's teardown.

    Every command has finished its work (sessions ended, the store closed) when `main`
    returns. Native libraries (FFmpeg, SQLite, Tesseract, CTranslate2) with threads of
    their own were seen, rarely, to crash while the interpreter tears down their modules
    after that; nothing is left to do then, so the process ends at once with its status.
    """
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _log_unexpected(exc: BaseException) -> Path:
    """Append the traceback to the log in the data folder (else the temp folder)."""
    return log_unexpected(exc, _HOME_SEEN[0], f"taskerino {' '.join(sys.argv[1:])!r}")


def _unraisable(info: sys.UnraisableHookArgs) -> None:
    if info.exc_value is not None:
        where = _log_unexpected(info.exc_value)
        click.echo(
            f"taskerino: {type(info.exc_value).__name__} in the background: "
            f"{printable(str(info.exc_value))} (details in {where})",
            err=True,
        )


def _thread_failed(info: threading.ExceptHookArgs) -> None:
    # Every recorder thread reports its own failures; this is the net under a defect.
    if info.exc_value is not None and not isinstance(info.exc_value, SystemExit):
        where = _log_unexpected(info.exc_value)
        name = info.thread.name if info.thread is not None else "a thread"
        click.echo(
            f"taskerino: {type(info.exc_value).__name__} in {name}: "
            f"{printable(str(info.exc_value))} (details in {where}; please report them)",
            err=True,
        )


_HOME_SEEN: list[str | None] = [None]  # the data folder once opened, for the error log


def _dump(data: object, indent: int | None = 2) -> None:
    click.echo(json.dumps(data, indent=indent))


@contextmanager
def _library(ctx: click.Context) -> Iterator[Taskerino]:
    from .sessions import Taskerino

    options = ctx.obj
    library = Taskerino.open(options["home"], store=options["store"], media=options["media"])
    _HOME_SEEN[0] = str(library.home)
    try:
        yield library
    finally:
        library.close()


@click.group(help="Record work sessions (screenshots, screen video, audio) and review them.")
@click.option(
    "--home",
    type=str,
    default=None,
    envvar="TASKERINO_HOME",
    help="Data folder (default: the platform's user data folder).",
)
@click.option(
    "--store",
    type=str,
    default=None,
    envvar="TASKERINO_STORE",
    help="Metadata store URL (default: SQLite in the data folder).",
)
@click.option(
    "--media",
    type=str,
    default=None,
    envvar="TASKERINO_MEDIA",
    help="Media store URL (default: the data folder's blobs/).",
)
@click.pass_context
def cli(ctx: click.Context, home: str | None, store: str | None, media: str | None) -> None:
    ctx.obj = {"home": home, "store": store, "media": media}


# --- sources --------------------------------------------------------------------------
@cli.command(help="List displays, windows and audio devices that can be recorded.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sources(as_json: bool) -> None:
    from .sessions import Taskerino

    found = Taskerino.sources()  # needs no data folder
    if as_json:
        _dump(found)
        return
    click.echo("Displays:")
    for d in found["displays"]:
        primary = " (primary)" if d["primary"] else ""
        click.echo(
            f"  {d['id']:<12} {d['width']}x{d['height']}+{d['x']}+{d['y']}  {d['name']}{primary}"
        )
    click.echo("Windows:")
    for w in found["windows"]:
        click.echo(f"  {w['id']:<18} {w['width']}x{w['height']}  {w['app']}: {w['title']}")
    if found["audio"]:
        click.echo("Audio:")
        for a in found["audio"]:
            click.echo(f"  {a['id']:<30} {a['kind']:<8} {a['name']}")


# --- record ---------------------------------------------------------------------------
@cli.command(help="Record a session in the foreground until --duration, Ctrl-C or SIGTERM.")
@click.option("--name", default="", help="Session name.")
@click.option("--description", default="", help="Session description.")
@click.option("--duration", default=None, help="Stop after this many seconds.")
@click.option("--screenshots/--no-screenshots", default=True, help="Take periodic screenshots.")
@click.option(
    "--screenshot-interval",
    default="120",
    show_default=True,
    help="Seconds between screenshots (at least 1).",
)
@click.option("--video", is_flag=True, help="Record screen video.")
@click.option(
    "--source",
    "sources_",
    multiple=True,
    help="Video source: display:N, window:ID or test:NAME (up to 4).",
)
@click.option("--compositor", default=None, help="passthrough (one source), grid or side-by-side.")
@click.option("--fps", default="15", show_default=True, help="Video frames per second (1-60).")
@click.option("--size", default="1920x1080", show_default=True, help="Video size WxH.")
@click.option("--audio", is_flag=True, help="Record the microphone.")
@click.option("--system-audio", is_flag=True, help="Record what the computer plays.")
@click.option("--mic", default=None, help="Microphone device id (see `taskerino sources`).")
@click.option(
    "--balance",
    default="50",
    show_default=True,
    help="Microphone/system mix, 0 (all microphone) to 100 (all system).",
)
@click.option(
    "--exclude",
    "exclude",
    multiple=True,
    metavar="PATTERN",
    help="Black out windows whose title or application matches (case-insensitive): a glob "
    "matching the whole name ('*KeePassXC*'), or re:REGEX matching anywhere. Repeatable; "
    "the patterns of 'taskerino settings exclude' apply too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ended session as JSON.")
@click.pass_context
def record(
    ctx: click.Context,
    name: str,
    description: str,
    duration: str | None,
    screenshots: bool,
    screenshot_interval: str,
    video: bool,
    sources_: tuple[str, ...],
    compositor: str | None,
    fps: str,
    size: str,
    audio: bool,
    system_audio: bool,
    mic: str | None,
    balance: str,
    exclude: tuple[str, ...],
    as_json: bool,
) -> None:
    # Everything is checked before the data folder is touched.
    seconds = parse_duration(duration) if duration is not None else None
    config = record_config(
        screenshots=screenshots,
        screenshot_interval=screenshot_interval,
        video=video,
        sources=sources_,
        compositor=compositor,
        fps=fps,
        size=size,
        audio=audio,
        system_audio=system_audio,
        mic=mic,
        balance=balance,
        exclude=exclude,
    )
    # The C heap's policy for a long recording, before any thread serves a big block.
    from . import heap

    heap.fix_policy()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _library(ctx) as library:
            from .sessions import StartRequest

            session = library.start(StartRequest(name=name, description=description, config=config))
            if not as_json:
                click.echo(
                    f"recording session {session.id} ({session.name}); Ctrl-C to end", err=True
                )
            deadline = None if seconds is None else time.monotonic() + seconds
            _watch(library, session.id, stop, deadline, quiet=as_json)
            ended = library.end(session.id)
            if as_json:
                _dump(library.session_json(ended.id))
            else:
                click.echo(
                    f"session {ended.id} {ended.status}: "
                    f"{ended.total_duration or 0:.1f} s, "
                    f"{len(ended.screenshots)} screenshots"
                    + (", video" if ended.video is not None else "")
                    + (", audio" if ended.audio_segments else ""),
                    err=True,
                )
                for line in _where_to_watch(ctx, library, ended.id):
                    click.echo(line, err=True)
            failures = library.failures(ended.id)
            if failures and ended.status == "completed":
                raise RecorderError(
                    "recording stopped early: "
                    + "; ".join(failures)
                    + f" (session {ended.id} was ended with what was recorded)"
                )
            if failures:
                raise RecorderError(
                    "; ".join(failures)
                    + f" (session {ended.id} keeps its files and is recovered with what was"
                    " recorded by the next taskerino command once there is room)"
                )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _where_to_watch(ctx: click.Context, library: Taskerino, session_id: str) -> list[str]:
    """Where a recorded session is kept and the command that shows it in a browser."""
    options = ctx.obj
    serve = "taskerino"
    if options["home"] is not None:
        serve += f" --home {shlex.quote(str(library.home))}"
    serve += " serve"
    if options["store"] is not None or options["media"] is not None:
        serve += " (with the same --store and --media)"
    return [
        f"saved in {library.home}",
        f"watch it: {serve}, then open http://127.0.0.1:{WEB_PORT}/sessions/{session_id}",
    ]


def _watch(
    library: Taskerino,
    session_id: str,
    stop: threading.Event,
    deadline: float | None,
    quiet: bool,
) -> None:
    """Wait for the end, showing live stats on a terminal."""
    show = not quiet and sys.stderr.isatty()
    last = 0.0
    try:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            if library.wait(session_id, 0.1):
                return  # ended from elsewhere
            if library.failures(session_id):
                return  # a recorder stopped: end now with what was recorded
            if show and time.monotonic() - last >= 1.0:
                last = time.monotonic()
                # \r back to the line's start, then erase what a longer line left there.
                click.echo(f"\r{live_line(library.stats(session_id))}\x1b[K", err=True, nl=False)
    finally:
        if show and last:
            click.echo("", err=True)  # what follows starts on a line of its own


def live_line(s: RecordingStats) -> str:
    """One line of what a recording is doing, for a person watching the terminal.

    Unchanged frames are not encoded again, so frames per second say little on a still
    screen: the line counts the frames grabbed against the target, and how many changed.
    """
    parts = [f"{s.state:<9}", _clock(s.seconds)]
    if s.target_fps:
        expected = max(s.frames_captured, int(s.seconds * s.target_fps))
        parts.append(
            f"frames {s.frames_captured}/{expected} at {s.target_fps:g} fps, "
            f"{s.frames_changed} changed, {s.frames_dropped} dropped ({s.drop_rate:.1%})"
        )
    if "audio_seconds" in s.audio:
        level = s.audio.get("audio_level_dbfs", -100.0)
        parts.append(f"audio {s.audio['audio_seconds']:.0f} s at {level:.0f} dBFS")
    parts += [s.health, f"{_size(s.bytes_written)} on disk"]
    return "  ".join(parts)


def _size(n: int) -> str:
    if n < 1_000_000:
        return f"{n / 1000:.0f} kB"
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


# --- sessions -------------------------------------------------------------------------
@cli.group(help="List, show and steer sessions.")
def sessions() -> None:
    """The subcommands do the work."""


@sessions.command("list", help="Sessions, newest first.")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--query", default=None, help="Text in name, description or tags.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sessions_list(ctx: click.Context, status: str | None, query: str | None, as_json: bool) -> None:
    query = None if query is None else check_query(query)
    with _library(ctx) as library:
        if as_json:
            # One line: fast for 10 000.
            _dump(library.list_json(status=_status(status), query=query), indent=None)
            return
        rows = library.list_sessions(status=_status(status), query=query)
    for r in rows:
        duration = f"{r.total_duration:.0f}s" if r.total_duration is not None else "-"
        click.echo(
            f"{r.id}  {r.status:<11} {r.start_time[:19]}  {duration:>7}  "
            f"{r.screenshot_count:>4} shots  {'video' if r.has_video else '     '}  "
            f"{r.name}"
        )


def _status(value: str | None) -> SessionStatus | None:
    # click.Choice has already limited the value to STATUSES.
    return cast("SessionStatus | None", value)


@sessions.command("show", help="One session with its screenshots, media and notes.")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sessions_show(ctx: click.Context, session_id: str, as_json: bool) -> None:
    from .sessions.budget import RECYCLED_NAMES

    session_id = check_session_id(session_id)
    with _library(ctx) as library:
        data = library.session_json(session_id)
    if as_json:
        _dump(data)
        return
    click.echo(f"{data['name']}  [{data['status']}]  {data['id']}")
    click.echo(
        f"  started {data['start_time']}  ended {data['end_time'] or '-'}  "
        f"duration {data['total_duration'] or 0:.1f} s"
    )
    if data["description"]:
        click.echo(f"  {data['description']}")
    click.echo(
        f"  {len(data['screenshots'])} screenshots, "
        f"{len(data['audio_segments'])} audio segments, "
        f"video: {'yes' if data['video'] else 'no'}"
    )
    if data["config"]["exclude"]:
        click.echo(f"  excluded windows: {', '.join(data['config']['exclude'])}")
    for item in data["context_items"]:
        click.echo(f"  {item['media_offset']:8.1f}s {item['type']}: {item['content']}")
    for r in data["recycled"]:
        click.echo(
            f"  removed by the storage budget at {r['at']}: {r['count']} "
            f"{RECYCLED_NAMES[r['kind']]}, {_bytes(r['bytes'])}"
        )


def _steer(action: str) -> Callable[..., None]:
    @click.argument("session_id")
    @click.pass_context
    def command(ctx: click.Context, session_id: str) -> None:
        session_id = check_session_id(session_id)
        with _library(ctx) as library:
            session = getattr(library, action)(session_id)
        click.echo(f"session {session.id} is {session.status}")

    return command


sessions.command("pause", help="Pause a recording session (from any process).")(_steer("pause"))
sessions.command("resume", help="Resume a paused session (from any process).")(_steer("resume"))
sessions.command("end", help="End a session (from any process).")(_steer("end"))


# --- settings -------------------------------------------------------------------------
@cli.group(help="Settings applied to every session.")
def settings() -> None:
    """The subcommands do the work."""


@settings.group(
    "exclude",
    help="Windows blacked out in every session (title or application: a glob matching the "
    "whole name, or re:REGEX matching anywhere; case-insensitive).",
)
def settings_exclude() -> None:
    """The subcommands do the work."""


def _print_exclusions(patterns: list[str], as_json: bool) -> None:
    if as_json:
        _dump(patterns)
    elif patterns:
        for pattern in patterns:
            click.echo(printable(pattern))
    else:
        click.echo("no windows are excluded", err=True)


@settings_exclude.command("list", help="The patterns applied to every session.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def settings_exclude_list(ctx: click.Context, as_json: bool) -> None:
    with _library(ctx) as library:
        _print_exclusions(library.exclusions(), as_json)


@settings_exclude.command("add", help="Exclude windows matching PATTERN in every session.")
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN...")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def settings_exclude_add(ctx: click.Context, patterns: tuple[str, ...], as_json: bool) -> None:
    check_exclusions(patterns)  # before the data folder is touched
    with _library(ctx) as library:
        _print_exclusions(library.change_exclusions(add=patterns), as_json)


@settings_exclude.command("remove", help="Stop excluding PATTERN (as it was added).")
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN...")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def settings_exclude_remove(ctx: click.Context, patterns: tuple[str, ...], as_json: bool) -> None:
    with _library(ctx) as library:
        _print_exclusions(library.change_exclusions(remove=patterns), as_json)


# --- stats / doctor -------------------------------------------------------------------
@cli.command(help="Live recording stats of a session.")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--watch", is_flag=True, help="Keep printing once a second until it stops.")
@click.pass_context
def stats(ctx: click.Context, session_id: str, as_json: bool, watch: bool) -> None:
    from .models import to_dict

    session_id = check_session_id(session_id)
    with _library(ctx) as library:
        while True:
            s = library.stats(session_id)
            if as_json:
                click.echo(json.dumps(to_dict(s)))
            else:
                # Uploads only matter with media in a bucket: shown once there are any.
                uploads = (
                    f" uploads pending {s.uploads_pending} failed {s.uploads_failed}"
                    if s.uploads_pending or s.uploads_failed
                    else ""
                )
                click.echo(
                    f"{s.state:<9} captured {s.frames_captured} processed "
                    f"{s.frames_processed} dropped {s.frames_dropped} "
                    f"({s.drop_rate:.1%}, {s.health}) fps {s.fps:.1f}/{s.target_fps:.0f}"
                    f" {s.bitrate_kbps:.0f} kbit/s lag {s.encode_lag_ms:.0f} ms{uploads}"
                )
            if not watch or s.state == "stopped":
                return
            time.sleep(1.0)


@cli.command(help="Check the database and the media files.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--deep", is_flag=True, help="Also check every file's contents against its hash.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, deep: bool) -> None:
    with _library(ctx) as library:
        problems = library.doctor(deep=deep)
    if as_json:
        _dump({"ok": not problems, "problems": problems})
    else:
        for problem in problems:
            click.echo(problem)
        click.echo("ok" if not problems else f"{len(problems)} problem(s)")
    if problems:
        sys.exit(1)


# --- storage budget / export ---------------------------------------------------------
def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@cli.command(help="Free space, oldest media first, until the media fit in the storage budget.")
@click.option(
    "--max-storage",
    default=None,
    help="Budget in bytes (500M, 2G; K/M/G/T are powers of 1024). Default: the budget set "
    "with 'taskerino budget'.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gc(ctx: click.Context, max_storage: str | None, dry_run: bool, as_json: bool) -> None:
    from .models import to_dict
    from .sessions.budget import RECYCLED_NAMES

    budget = None if max_storage is None else parse_bytes(max_storage)
    with _library(ctx) as library:
        report = library.gc(budget, dry_run=dry_run)
    if as_json:
        data = to_dict(report)
        data["within_budget"] = report.within_budget
        _dump(data)
        return
    would = "would remove" if dry_run else "removed"
    for r in report.removals:
        click.echo(
            f"{r.session_id[:8]}  {r.start_time}  {would} {r.count} "
            f"{RECYCLED_NAMES[r.kind]}, {_bytes(r.bytes)}  ({printable(r.session_name)})"
        )
    verdict = "within" if report.within_budget else "still over"
    click.echo(
        f"media: {_bytes(report.before)} before, {_bytes(report.after)} "
        f"{'would remain' if dry_run else 'after'}; {verdict} the budget of "
        f"{_bytes(report.max_storage)}"
    )


@cli.command(help="Show, set (e.g. 20G) or clear (off) the storage budget kept after each session.")
@click.argument("max_storage", required=False)
@click.pass_context
def budget(ctx: click.Context, max_storage: str | None) -> None:
    clear = max_storage is not None and max_storage.strip().lower() == "off"
    value = None if max_storage is None or clear else parse_bytes(max_storage)
    with _library(ctx) as library:
        if clear:
            library.set_max_storage(None)
        elif value is not None:
            library.set_max_storage(value)
        current = library.max_storage()
    if current is None:
        click.echo("no storage budget: sessions keep all their media")
    else:
        click.echo(f"storage budget: {current} bytes ({_bytes(current)}), kept after each session")


@cli.command(help="Export a session: video, JSON, transcript (SRT, WebVTT), summary, screenshots.")
@click.argument("session_id")
@click.option("--to", "folder", required=True, help="Folder to write into (made if missing).")
@click.option(
    "--format",
    "formats",
    multiple=True,
    help=f"What to write, comma-separated or repeated: {','.join(EXPORT_FORMATS)} (default all).",
)
@click.option("--force", is_flag=True, help="Replace files that exist in the folder.")
@click.pass_context
def export(
    ctx: click.Context, session_id: str, folder: str, formats: tuple[str, ...], force: bool
) -> None:
    session_id = check_session_id(session_id)
    wanted = check_export_formats(formats)
    with _library(ctx) as library:
        written = library.export(session_id, Path(folder), wanted, force=force)
    for path in written:
        click.echo(str(path))


# --- serve ----------------------------------------------------------------------------
@cli.command(help="Serve the review web app; prints its login URL. Ctrl-C or SIGTERM stops it.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=str(WEB_PORT),
    show_default=True,
    help="Port to listen on (when taken, a free one is used; 0: any free port).",
)
@click.option(
    "--no-worker",
    is_flag=True,
    help="Run no enrichment worker in the server (run `taskerino worker` elsewhere).",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: str, no_worker: bool) -> None:
    number = parse_port(port)
    from .web import serve as run_server  # the web stack is loaded only for this command

    with _library(ctx) as library:
        run_server(
            library,
            host=host,
            port=number,
            announce=click.echo,
            warn=lambda message: click.echo(f"taskerino: {message}", err=True),
            worker=not no_worker,
        )


# --- enrichment and search ------------------------------------------------------------
def _stop_on_signals(stop: threading.Event) -> dict[signal.Signals, Any]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


@cli.command(help="Run enrichment jobs (OCR, transcripts, chapters, index) until stopped.")
@click.option("--drain", is_flag=True, help="Stop once no job is queued or running.")
@click.option("--concurrency", default="1", show_default=True, help="Jobs run at once.")
@click.pass_context
def worker(ctx: click.Context, drain: bool, concurrency: str) -> None:
    threads = parse_concurrency(concurrency)
    with _library(ctx) as library:
        runner = library.worker(threads)
        previous = _stop_on_signals(runner.stop)
        try:
            click.echo(f"worker {runner.owner}: {threads} at a time; Ctrl-C to stop", err=True)
            runner.run(drain=drain)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    click.echo(f"{runner.jobs_done} job(s) done, {runner.jobs_failed} failed for good", err=True)


@cli.command(help="Queue a session's enrichment again (all stages unless --stage).")
@click.argument("session_id")
@click.option("--stage", "stages", multiple=True, help="ocr, transcribe, chapters or index.")
@click.option("--wait", is_flag=True, help="Run the jobs here and wait until they finish.")
@click.pass_context
def enrich(ctx: click.Context, session_id: str, stages: tuple[str, ...], wait: bool) -> None:
    session_id = check_session_id(session_id)
    wanted = check_stages(stages)
    with _library(ctx) as library:
        jobs = library.enrich(session_id, wanted)
        click.echo(f"queued {', '.join(j.kind for j in jobs)} for session {session_id}", err=True)
        if not wait:
            return
        runner = library.worker(1)
        previous = _stop_on_signals(runner.stop)
        try:
            runner.run(drain=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status = library.get(session_id).enrichment
        for stage in wanted:
            state = status.get(stage)
            click.echo(
                f"  {stage:<11} {state.status if state else '-'}"
                + (f": {state.error}" if state and state.error else "")
            )
        if any(status.get(s) is None or status[s].status == "failed" for s in wanted):
            raise RecorderError(f"enrichment of session {session_id} did not finish")


@cli.group(help="Enrichment jobs.")
def jobs() -> None:
    """The subcommands do the work."""


@jobs.command("list", help="Jobs in the order they were queued.")
@click.option("--state", type=click.Choice(JOB_STATES), default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    from .models import to_dict

    with _library(ctx) as library:
        rows = library.jobs(cast("JobState | None", state))
    if as_json:
        _dump([to_dict(j) for j in rows])
        return
    for j in rows:
        error = f"  {j.last_error}" if j.last_error else ""
        click.echo(f"{j.id}  {j.kind:<10} {j.state:<7} try {j.attempt}  {j.session_id}{error}")


@cli.command(help='Search what was on screen, said, in front and written ("phrases", prefix*).')
@click.argument("text")
@click.option("--session", "session_id", default=None, help="Only this session.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def search(ctx: click.Context, text: str, session_id: str | None, as_json: bool) -> None:
    from .models import to_dict

    text = check_query(text)
    with _library(ctx) as library:
        hits = library.search(text, session_id=session_id)
    if as_json:
        _dump([to_dict(h) for h in hits])
        return
    for h in hits:
        click.echo(
            f"{h.session_id[:8]}  {_clock(h.media_offset):>8}  {h.kind:<10} "
            f"{printable(h.snippet)}  ({h.session_name})"
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
