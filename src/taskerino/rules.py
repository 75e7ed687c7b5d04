"""The one rule book: every limit and allowed value, and the parsers that enforce them.

The CLI, the web API and the library all check input here, so a limit is defined once and
every message says what is wrong and what is allowed. Nothing here touches a device or the
disk; checks that need the screen or the sound server (does display:3 exist?) live with the
capture code and are run by `sessions.configure`.
"""

from __future__ import annotations

import fnmatch
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import InvalidInput

if TYPE_CHECKING:
    from .models import SessionConfig, SessionFilter, SessionSort, SessionStatus

MAX_SOURCES = 4
COMPOSITORS = ("passthrough", "grid", "side-by-side")
MAX_SIZE = (7680, 4320)
DEFAULT_SIZE = (1920, 1080)
FPS_RANGE = (1, 60)
DEFAULT_FPS = 15
BALANCE_RANGE = (0, 100)
SCREENSHOT_INTERVAL_RANGE = (1.0, 24 * 3600.0)
MAX_DURATION = 31 * 24 * 3600.0  # a month: longer is a typo, and overflows timers
TEST_SOURCE_PREFIX = "test:"
# Windows kept out of recordings (spec §12): a glob, or a regular expression after `re:`.
MAX_EXCLUSIONS = 100
MAX_EXCLUSION = 300
REGEX_PREFIX = "re:"
EXCLUDED_TITLE = "(excluded)"  # what the activity track says of an excluded window

# Enrichment stages (spec §5). A session that ends is queued for the first ones; chapters
# follow once OCR and transcript are in, the index check follows the chapters.
STAGES = ("ocr", "transcribe", "chapters", "index")
FIRST_STAGES = ("ocr", "transcribe")
STAGE_INPUTS = {"chapters": ("ocr", "transcribe"), "index": ("chapters",)}
CONCURRENCY_RANGE = (1, 64)
MAX_SEARCH_RESULTS = 500

MAX_NAME = 200
MAX_DESCRIPTION = 10_000
MAX_NOTE = 10_000
MAX_TAGS = 50
MAX_TAG = 64
MAX_QUERY = 500
CONTEXT_ITEM_TYPES = ("note", "task", "marker")
STATUSES: tuple[SessionStatus, ...] = ("active", "paused", "completed", "interrupted")
SESSION_SORTS: tuple[SessionSort, ...] = ("newest", "oldest", "longest", "shortest", "name")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_OFFSET = 10_000_000
THUMBNAIL_WIDTH_RANGE = (16, 1920)
PORT_RANGE = (0, 65535)
MAX_STORAGE = 1 << 60  # an exabyte: anything larger is a typo
# Suffixes of byte sizes: powers of 1024, as `du -h` and `df -h` show them.
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
EXPORT_FORMATS = ("mp4", "json", "md", "srt", "vtt", "screenshots")
WEB_PORT = 8741  # fixed, so that bookmarks and the login cookie keep working


_CONTROL = ("Cc", "Zl", "Zp")


def printable(text: str) -> str:
    """`text` on one line: control characters, line separators and bytes that were not
    valid UTF-8 shown as escapes, so a message can never break a line or a terminal."""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in (*_CONTROL, "Cs")
        else c
        for c in text
    )


def is_test_source(source_id: str) -> bool:
    """`test:NAME` sources are synthetic pictures: they need no screen."""
    return source_id.startswith(TEST_SOURCE_PREFIX)


def parse_number(
    text: object, what: str, *, minimum: float = 0.0, maximum: float = math.inf
) -> float:
    """A finite number from `minimum` to `maximum`, from a flag value or a JSON field."""
    if isinstance(text, bool):
        raise InvalidInput(f"{what} must be a number, got {text!r}")
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{what} must be a number, got {_show(text)}") from None
    if not math.isfinite(value) or value < minimum or value > maximum:
        allowed = f">= {minimum:g}" if maximum == math.inf else f"from {minimum:g} to {maximum:g}"
        raise InvalidInput(f"{what} must be a number {allowed}, got {_show(text)}")
    return value


def parse_whole(text: object, what: str, low: int, high: int) -> int:
    value = parse_number(text, what)
    if value != int(value) or not low <= value <= high:
        raise InvalidInput(f"{what} must be a whole number from {low} to {high}, got {_show(text)}")
    return int(value)


def parse_fps(text: object) -> int:
    return parse_whole(text, "fps", *FPS_RANGE)


def parse_balance(text: object) -> int:
    return parse_whole(text, "balance (0 = all microphone, 100 = all system audio)", *BALANCE_RANGE)


def parse_interval(text: object) -> float:
    low, high = SCREENSHOT_INTERVAL_RANGE
    value = parse_number(text, "screenshot interval (seconds)")
    if value < low:
        raise InvalidInput(
            f"screenshot interval must be at least {low:g} second, got {_show(text)}"
        )
    if value > high:
        raise InvalidInput(
            f"screenshot interval must be at most {high:g} seconds (a day), got {_show(text)}"
        )
    return value


def parse_duration(text: object) -> float:
    return parse_number(text, "duration (seconds)", minimum=0.0, maximum=MAX_DURATION)


def parse_size(text: object) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(-?\d{1,9})\s*[xX]\s*(-?\d{1,9})\s*", str(text))
    if not match:
        raise InvalidInput(f"size must look like WIDTHxHEIGHT (e.g. 1920x1080), got {_show(text)}")
    width, height = int(match[1]), int(match[2])
    check_size(width, height)
    return width, height


def check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise InvalidInput(
            f"size must be positive even numbers (e.g. 1920x1080), got {width}x{height}"
        )
    if width > MAX_SIZE[0] or height > MAX_SIZE[1]:
        raise InvalidInput(
            f"size must be at most {MAX_SIZE[0]}x{MAX_SIZE[1]}, got {width}x{height}"
        )


def check_compositor(kind: str | None, n_sources: int) -> str:
    """The compositor for `n_sources` sources (default: passthrough for one, else grid)."""
    if not 1 <= n_sources <= MAX_SOURCES:
        raise InvalidInput(
            f"at most {MAX_SOURCES} video sources can be composited, got {n_sources}"
            if n_sources > MAX_SOURCES
            else "a video needs at least one source"
        )
    kind = kind or ("passthrough" if n_sources == 1 else "grid")
    if kind not in COMPOSITORS:
        raise InvalidInput(f"unknown compositor {_show(kind)}: use one of {', '.join(COMPOSITORS)}")
    if kind == "passthrough" and n_sources != 1:
        raise InvalidInput(
            f"the passthrough compositor takes exactly one source, got {n_sources}: "
            "use grid or side-by-side for several"
        )
    return kind


def check_text(value: object, what: str, limit: int, *, allow_empty: bool = True) -> str:
    """Text from a user: a string of valid Unicode, no control characters, within `limit`.

    Bytes that were not valid UTF-8 on the command line arrive as lone surrogates; they
    cannot be stored or printed, so they are refused here rather than crash later.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8 text: use plain Unicode text") from None
    if any((ord(c) < 32 and c not in "\t\n\r") or c == "\x7f" for c in value):
        raise InvalidInput(f"{what} must not hold control characters")
    if len(value) > limit:
        raise InvalidInput(f"{what} is too long: at most {limit} characters, got {len(value)}")
    if not allow_empty and not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    return value


def check_tags(tags: Iterable[object]) -> list[str]:
    result: list[str] = []
    for tag in tags:
        text = check_text(tag, "a tag", MAX_TAG, allow_empty=False).strip()
        if text not in result:
            result.append(text)
    if len(result) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags, got {len(result)}")
    return result


def check_session_id(value: object) -> str:
    """A session id as given by a user: refused early when it cannot be one."""
    text = check_text(value, "session id", 64, allow_empty=False)
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", text):
        raise InvalidInput(
            f"session id {_show(text)} is malformed: ids are letters and digits "
            "(see 'taskerino sessions list')"
        )
    return text


def check_query(value: object) -> str:
    return check_text(value, "query", MAX_QUERY)


def check_stages(values: Iterable[object]) -> list[str]:
    """Enrichment stage names, each once, in the order of STAGES (default: all)."""
    names = [check_text(v, "stage", 40) for v in values]
    for name in names:
        if name not in STAGES:
            raise InvalidInput(f"unknown stage {_show(name)}: use {', '.join(STAGES)}")
    return [s for s in STAGES if s in names] if names else list(STAGES)


def parse_concurrency(text: object) -> int:
    return parse_whole(text, "concurrency (worker threads)", *CONCURRENCY_RANGE)


def compile_exclusion(pattern: str) -> re.Pattern[str]:
    """An exclusion pattern as one case-insensitive regular expression to `search` with.

    A glob (`*`, `?`, `[...]`) must match a whole title or application name; after `re:`,
    a regular expression matches anywhere in it (anchor it with ^ and $ if need be).
    """
    if pattern.startswith(REGEX_PREFIX):
        body = pattern[len(REGEX_PREFIX) :]
        if not body.strip():
            raise InvalidInput(
                f"exclude pattern {_show(pattern)} needs a regular expression after 're:'"
            )
        try:
            return re.compile(body, re.IGNORECASE)
        except (re.error, RecursionError, OverflowError) as exc:
            raise InvalidInput(
                f"exclude pattern {_show(pattern)} is not a valid regular expression ({exc}); "
                "write a glob like '*KeePassXC*', or 're:' and a Python regular expression"
            ) from None
    return re.compile(r"\A" + fnmatch.translate(pattern), re.IGNORECASE)


def check_exclusions(values: Iterable[object]) -> list[str]:
    """Exclusion patterns from a user (flags, a setting, a JSON body): each valid, each
    once, in the order given."""
    if isinstance(values, str):
        raise InvalidInput("exclude patterns must be a list of patterns, not one text")
    result: list[str] = []
    for value in values:
        text = check_text(value, "exclude pattern", MAX_EXCLUSION, allow_empty=False)
        compile_exclusion(text)
        if text not in result:
            result.append(text)
    if len(result) > MAX_EXCLUSIONS:
        raise InvalidInput(f"at most {MAX_EXCLUSIONS} exclude patterns, got {len(result)}")
    return result


def exclusion_matcher(patterns: Iterable[str]) -> Callable[[Iterable[str]], bool]:
    """A test of a window's names (title, application names): True when any pattern
    matches any of them."""
    compiled = [compile_exclusion(p) for p in patterns]

    def matches(names: Iterable[str]) -> bool:
        return any(c.search(n) for n in names if n for c in compiled)

    return matches


def record_config(
    *,
    screenshots: object = True,
    screenshot_interval: object = 120,
    video: object = False,
    sources: Iterable[object] = (),
    compositor: object = None,
    fps: object = DEFAULT_FPS,
    size: object = None,
    audio: object = False,
    system_audio: object = False,
    mic: object = None,
    balance: object = 50,
    exclude: Iterable[object] = (),
) -> SessionConfig:
    """A session configuration from raw values (flags or a JSON body), checked as a whole.

    Only what needs no device is checked here; `sessions.configure` then checks that the
    sources and audio devices exist.
    """
    from .models import SessionConfig  # not needed by `--help`: imported on first use

    source_list = [check_text(s, "source id", 100, allow_empty=False) for s in sources]
    wants_video = _flag(video, "video") or bool(source_list)
    width, height = parse_size(size) if size is not None else DEFAULT_SIZE
    mic_text = None if mic is None else check_text(mic, "microphone device", 300)
    config = SessionConfig(
        screenshots=_flag(screenshots, "screenshots"),
        screenshot_interval=parse_interval(screenshot_interval),
        video=wants_video,
        sources=source_list,
        compositor=None if compositor is None else check_text(compositor, "compositor", 40),
        fps=parse_fps(fps) if wants_video else DEFAULT_FPS,
        width=width,
        height=height,
        audio=_flag(audio, "audio") or mic_text is not None,
        system_audio=_flag(system_audio, "system audio"),
        mic=mic_text,
        balance=parse_balance(balance),
        exclude=check_exclusions(exclude),
    )
    return check_config(config)


def check_config(config: SessionConfig) -> SessionConfig:
    """The device-free checks of a whole configuration; canonical values filled in."""
    if not (config.screenshots or config.video or config.audio or config.system_audio):
        raise InvalidInput(
            "nothing to record: enable screenshots, --video, --audio or --system-audio"
        )
    config.screenshot_interval = parse_interval(config.screenshot_interval)
    config.balance = parse_balance(config.balance)
    config.exclude = check_exclusions(config.exclude)
    if config.video:
        config.fps = parse_fps(config.fps)
        check_size(config.width, config.height)
        config.sources = list(config.sources) or ["display:1"]
        config.compositor = check_compositor(config.compositor, len(config.sources))
    return config


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be true or false, got {_show(value)}")
    return value


def _show(value: object) -> str:
    """A value for an error message: quoted, cut short, never unprintable."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return printable(text)


def check_object_id(value: object, what: str) -> str:
    """An attachment or screenshot id as given by a user (a URL, a JSON body): letters,
    digits, '-' and '_' only, so that it can never name a path."""
    text = check_text(value, what, 64, allow_empty=False)
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", text):
        raise InvalidInput(f"{what} {_show(text)} is malformed: ids are letters and digits")
    return text


def parse_statuses(value: object) -> list[SessionStatus]:
    """One status or several separated by commas (`active,paused`); empty: every status."""
    text = check_text(value, "status", 200)
    result: list[SessionStatus] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        found = next((s for s in STATUSES if s == part), None)
        if found is None:
            raise InvalidInput(f"unknown status {_show(part)}: use one of {', '.join(STATUSES)}")
        if found not in result:
            result.append(found)
    return result


def parse_time_bound(value: object, what: str, *, end: bool = False) -> str:
    """A date (`2026-11-25`) or a time (`2026-11-25T09:14:00Z`; without a zone it is UTC)
    as the ISO UTC text sessions carry. With `end`, a date means the end of that day."""
    text = check_text(value, what, 40, allow_empty=False).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
            if end:
                moment += timedelta(days=1)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        from .models import utc_iso

        return utc_iso(moment.timestamp())
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(
            f"{what} must be a date like 2026-11-25 or a time like 2026-11-25T09:14:00Z, "
            f"got {_show(text)}"
        ) from None


def session_filter(
    *,
    status: object = None,
    query: object = None,
    since: object = None,
    until: object = None,
    tag: object = None,
    sort: object = None,
    limit: object = None,
    offset: object = None,
) -> SessionFilter:
    """A listing's filter from raw values (query parameters or arguments), checked."""
    from .models import SessionFilter

    chosen_sort = "newest" if sort in (None, "") else check_text(sort, "sort", 20)
    found_sort = next((s for s in SESSION_SORTS if s == chosen_sort), None)
    if found_sort is None:
        raise InvalidInput(
            f"unknown sort {_show(chosen_sort)}: use one of {', '.join(SESSION_SORTS)}"
        )
    start = None if since in (None, "") else parse_time_bound(since, "from")
    stop = None if until in (None, "") else parse_time_bound(until, "to", end=True)
    if start is not None and stop is not None and stop <= start:
        raise InvalidInput(f"the date range is empty: 'to' ({stop}) is not after 'from' ({start})")
    tag_text = None if tag in (None, "") else check_text(tag, "tag", MAX_TAG).strip()
    return SessionFilter(
        statuses=[] if status is None else parse_statuses(status),
        query=None if query in (None, "") else check_query(query),
        since=start,
        until=stop,
        tag=tag_text or None,
        sort=found_sort,
        limit=PAGE_SIZE if limit in (None, "") else parse_whole(limit, "limit", 1, MAX_PAGE_SIZE),
        offset=0 if offset in (None, "") else parse_whole(offset, "offset", 0, MAX_OFFSET),
    )


def parse_port(value: object) -> int:
    """A TCP port to listen on; 0 asks the system for a free one."""
    return parse_whole(value, "port", *PORT_RANGE)


def parse_thumbnail_width(value: object) -> int:
    return parse_whole(value, "thumbnail width", *THUMBNAIL_WIDTH_RANGE)


def parse_media_offset(value: object) -> float:
    return parse_number(value, "media offset (seconds)", maximum=MAX_DURATION)


def parse_flag(value: object, what: str) -> bool:
    return _flag(value, what)


def parse_bytes(value: object, what: str = "storage budget") -> int:
    """A byte count: a whole number, optionally with a suffix K, M, G or T (powers of
    1024, `B`/`iB` allowed after it: 500M, 2G, 1.5GiB), from 0 to an exabyte."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value), re.IGNORECASE)
    if isinstance(value, bool) or match is None:
        raise InvalidInput(
            f"{what} must be a number of bytes, optionally with K, M, G or T "
            f"(e.g. 500M, 2G), got {_show(value)}"
        )
    number = float(match[1]) * SIZE_UNITS[match[2].upper()]
    if number > MAX_STORAGE:
        raise InvalidInput(f"{what} must be at most 1024P bytes, got {_show(value)}")
    return int(number)


def check_export_formats(values: Iterable[object]) -> list[str]:
    """Export formats, in the order of EXPORT_FORMATS; empty means all of them. Values may
    be comma-separated (`--format mp4,md`)."""
    wanted: set[str] = set()
    for value in values:
        for part in str(value).split(","):
            name = part.strip().lower()
            if name not in EXPORT_FORMATS:
                raise InvalidInput(
                    f"unknown export format {_show(part)}: choose from {', '.join(EXPORT_FORMATS)}"
                )
            wanted.add(name)
    return [f for f in EXPORT_FORMATS if not wanted or f in wanted]
