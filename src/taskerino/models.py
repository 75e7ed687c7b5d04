"""The data model of a session (spec §1) as typed dataclasses with JSON round-trip.

`to_dict`/`from_dict` are generic over the dataclass fields: a field missing from a stored
record gets its default, an unknown field is ignored, and `schema_version` selects the
migrations in `MIGRATIONS` that bring an old record up to date before it is loaded (a record
without `schema_version` predates it: version 1).
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args, get_origin

SCHEMA_VERSION = 2

SessionStatus = Literal["active", "paused", "completed", "interrupted"]
AttachmentType = Literal["video", "image", "audio", "file"]
ContextItemType = Literal["note", "task", "marker"]
ChunkingStatus = Literal["pending", "processing", "complete", "error"]
RecordingState = Literal["recording", "paused", "stopped"]
Health = Literal["healthy", "warning", "critical"]
JobState = Literal["queued", "running", "done", "failed"]
StageState = Literal["pending", "running", "done", "failed"]
TranscriptSource = Literal["mic", "system", "mixed"]
SearchKind = Literal["ocr", "transcript", "activity", "note", "comment", "session"]
RecycledKind = Literal["video_chunks", "full_video", "screenshots"]

STAGE_STATES: tuple[StageState, ...] = ("pending", "running", "done", "failed")
TRANSCRIPT_SOURCES: tuple[TranscriptSource, ...] = ("mic", "system", "mixed")

LIVE_STATUSES: tuple[SessionStatus, ...] = ("active", "paused")


def on_timeline(seconds: float) -> float:
    """The one rounding rule of media offsets and durations: milliseconds. Rounding is
    monotonic, so an offset read before the end is never past the rounded end."""
    return round(seconds, 3)


def new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> str:
    return utc_iso(datetime.now(UTC).timestamp())


def utc_iso(unix_time: float) -> str:
    """Unix time as the ISO 8601 UTC text every record uses."""
    moment = datetime.fromtimestamp(unix_time, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Attachment:
    id: str
    type: AttachmentType
    name: str
    mime_type: str
    size: int
    hash: str
    created_at: str = field(default_factory=utc_now)
    duration: float | None = None
    width: int | None = None
    height: int | None = None


@dataclass
class SessionScreenshot:
    id: str
    session_id: str
    timestamp: str
    media_offset: float
    attachment_id: str
    hash: str
    user_comment: str | None = None
    flagged: bool = False
    ocr_text: str | None = None
    analysis_status: str = "pending"


@dataclass
class SessionAudioSegment:
    id: str
    session_id: str
    timestamp: str
    media_offset: float
    duration: float
    attachment_id: str
    transcription: str | None = None
    transcription_status: str = "pending"


@dataclass
class SessionVideoChunk:
    id: str
    video_id: str
    attachment_id: str
    index: int
    start_offset: float
    end_offset: float
    frames: int
    bytes: int


@dataclass
class VideoChapter:
    id: str
    session_id: str
    start_offset: float
    end_offset: float
    title: str
    summary: str = ""
    key_topics: list[str] = field(default_factory=list)
    thumbnail_attachment_id: str | None = None
    confidence: float = 0.0


@dataclass
class SessionVideo:
    id: str
    session_id: str
    width: int
    height: int
    fps: int
    sources: list[str]
    compositor: str
    full_video_attachment_id: str | None = None
    duration: float = 0.0
    chunking_status: ChunkingStatus = "pending"
    chunks: list[SessionVideoChunk] = field(default_factory=list)
    chapters: list[VideoChapter] = field(default_factory=list)


@dataclass
class ContextItem:
    id: str
    session_id: str
    timestamp: str
    media_offset: float
    type: ContextItemType
    content: str


@dataclass
class ActivityEvent:
    """The focused window from `media_offset` on (stored when it changes)."""

    id: str
    session_id: str
    timestamp: str
    media_offset: float
    app: str
    title: str


@dataclass
class OcrWord:
    """A word OCR found, with its box in pixels of the picture it was read from."""

    text: str
    x: int
    y: int
    w: int
    h: int


@dataclass
class OcrText:
    """The text OCR read from a screenshot (`screenshot_id`) or a video key frame (None)."""

    id: str
    session_id: str
    media_offset: float
    screenshot_id: str | None
    text: str
    words: list[OcrWord] = field(default_factory=list)


@dataclass
class TranscriptLine:
    id: str
    session_id: str
    start_offset: float
    end_offset: float
    text: str
    source: TranscriptSource = "mixed"


@dataclass
class StageStatus:
    """Where an enrichment stage of a session stands; `error` says why it failed."""

    status: StageState = "pending"
    error: str | None = None
    updated_at: str = field(default_factory=utc_now)


@dataclass
class SearchHit:
    """One match of a search: where it is (`session_id`, `media_offset`: 0 for the session
    itself), what matched (`kind`, `item_id`: the row of that kind, the session's id for a
    session hit), `snippet` with each match in `[` `]`, and for OCR hits the boxes of the
    words that matched. `score` orders hits of one search: higher is better."""

    session_id: str
    kind: SearchKind
    media_offset: float
    snippet: str
    item_id: str
    session_name: str
    score: float
    words: list[OcrWord] = field(default_factory=list)


@dataclass
class SessionConfig:
    """What was asked for when the session started."""

    screenshots: bool = True
    screenshot_interval: float = 120.0
    screenshot_source: str | None = None  # None: all displays
    video: bool = False
    sources: list[str] = field(default_factory=list)
    compositor: str | None = None
    fps: int = 15
    width: int = 1920
    height: int = 1080
    audio: bool = False
    system_audio: bool = False
    mic: str | None = None
    balance: int = 50
    # Windows blacked out at capture time, their titles kept out of the activity track:
    # the patterns given for the session and those of the `exclude` setting (spec §12).
    exclude: list[str] = field(default_factory=list)


@dataclass
class Session:
    id: str
    name: str
    start_time: str
    description: str = ""
    status: SessionStatus = "active"
    end_time: str | None = None
    paused_at: str | None = None
    total_paused: float = 0.0
    total_duration: float | None = None
    config: SessionConfig = field(default_factory=SessionConfig)
    screenshots: list[SessionScreenshot] = field(default_factory=list)
    audio_segments: list[SessionAudioSegment] = field(default_factory=list)
    video: SessionVideo | None = None
    # The session's audio joined into one playable file (also muxed into the video).
    audio_attachment_id: str | None = None
    context_items: list[ContextItem] = field(default_factory=list)
    activity: list[ActivityEvent] = field(default_factory=list)
    transcript: list[TranscriptLine] = field(default_factory=list)
    # Without word boxes (`words` empty), to keep a session small; the store's `ocr_for`
    # gives them.
    ocr: list[OcrText] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    enrichment: dict[str, StageStatus] = field(default_factory=dict)  # by stage name
    recycled: list[RecycledMedia] = field(default_factory=list)  # removed by the budget
    schema_version: int = SCHEMA_VERSION


@dataclass
class RecycledMedia:
    """Media of a session that the storage budget removed (`taskerino gc`): what, how many
    files and bytes, and when. The text found in it (OCR, transcript) stays."""

    kind: RecycledKind
    count: int
    bytes: int
    at: str = field(default_factory=utc_now)


@dataclass
class SessionSummary:
    """One row of `sessions list`: the session without its children."""

    id: str
    name: str
    status: SessionStatus
    start_time: str
    end_time: str | None
    total_duration: float | None
    screenshot_count: int
    audio_segment_count: int
    has_video: bool
    description: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class RecordingStats:
    session_id: str
    state: RecordingState = "recording"
    frames_captured: int = 0  # capture ticks that grabbed a picture, changed or not
    frames_processed: int = 0
    frames_dropped: int = 0
    drop_rate: float = 0.0
    fps: float = 0.0
    target_fps: float = 0.0
    bytes_written: int = 0  # on disk, every recorder's, the files being written included
    bitrate_kbps: float = 0.0
    encode_lag_ms: float = 0.0
    health: Health = "healthy"
    updated_at: str = field(default_factory=utc_now)
    audio: dict[str, float] = field(default_factory=dict)
    # Media files closed but not yet in a remote blob store, and failed upload attempts
    # so far (each retried): both stay 0 with the embedded folder store.
    uploads_pending: int = 0
    uploads_failed: int = 0
    frames_changed: int = 0  # frames that differed from the one before, so were encoded
    seconds: float = 0.0  # recorded so far, paused time excluded


@dataclass
class Job:
    """A unit of enrichment work on one session (spec §5); see `JobQueue` in the store.

    `run_at` (not to be claimed before) and `lease_until` (the worker's lease ends) are unix
    seconds: deadlines compared with the worker's clock, like the `now` the queue is given.
    `created_at` and `finished_at` are ISO 8601 UTC, like every other record time.
    `lease_owner` and `lease_until` are set while the job runs and None otherwise;
    `attempt` counts the claims (a clean release gives its claim back); `last_error` is the
    error of the latest failed attempt, kept also once the job is done or failed.
    """

    id: str
    kind: str
    session_id: str
    state: JobState = "queued"
    attempt: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    run_at: float = 0.0
    last_error: str | None = None
    created_at: str = field(default_factory=utc_now)
    finished_at: str | None = None


def drop_rate(processed: int, dropped: int) -> float:
    total = processed + dropped
    return dropped / total if total else 0.0


def health_for(rate: float) -> Health:
    if rate < 0.01:
        return "healthy"
    if rate < 0.05:
        return "warning"
    return "critical"


# --- JSON round-trip -------------------------------------------------------------------

T = TypeVar("T")


def _stage_statuses(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept a stage's status as text ("done", or "failed: why"); version 2 keeps a
    `StageStatus`. Text that names no state is kept as the error of a pending stage, so
    that the stage runs again."""
    statuses: dict[str, Any] = {}
    when = data.get("end_time") or data.get("start_time") or ""
    for stage, value in (data.get("enrichment") or {}).items():
        if not isinstance(value, str):
            statuses[stage] = value
            continue
        state, _, why = value.partition(":")
        if state.strip() in STAGE_STATES:
            error = why.strip() or None
            statuses[stage] = {"status": state.strip(), "error": error, "updated_at": when}
        else:
            statuses[stage] = {"status": "pending", "error": value, "updated_at": when}
    data["enrichment"] = statuses
    return data


# schema_version N -> function that turns a version-N record into a version-N+1 record.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _stage_statuses}


def to_dict(obj: object) -> dict[str, Any]:
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"not a dataclass instance: {obj!r}")
    return dataclasses.asdict(obj)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    version = int(data.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        # A newer program wrote this; load what we know and keep going.
        return data
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](dict(data))
        version += 1
        data["schema_version"] = version
    return data


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a JSON object; missing fields get defaults, unknown ones are ignored."""
    if cls is Session:
        data = migrate(data)
    return typing.cast(T, _build(cls, data))


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if origin is list:
        (item,) = get_args(hint)
        return [_convert(item, v) for v in value]
    if origin is dict:
        _, item = get_args(hint)
        return {k: _convert(item, v) for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for {hint.__name__}, found {value!r:.40}")
        return _build(hint, value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


# --- listing and watching sessions ------------------------------------------------------

SessionSort = Literal["newest", "oldest", "longest", "shortest", "name"]


@dataclass
class SessionFilter:
    """Which sessions to list, in which order, and which page of them (see `rules`)."""

    statuses: list[SessionStatus] = field(default_factory=list)  # empty: every status
    query: str | None = None  # text in name, description or tags
    since: str | None = None  # ISO UTC: started at or after
    until: str | None = None  # ISO UTC: started before
    tag: str | None = None  # carries exactly this tag
    sort: SessionSort = "newest"
    limit: int = 50
    offset: int = 0


@dataclass
class SessionPage:
    """One page of a listing, the number of sessions that match in all, and for each
    session on the page that has screenshots, the attachment id of its first one."""

    sessions: list[SessionSummary]
    total: int
    limit: int
    offset: int
    thumbnails: dict[str, str] = field(default_factory=dict)


@dataclass
class SessionState:
    """The fields of a session that change while it records: cheap to read often."""

    session_id: str
    status: SessionStatus
    start_time: str
    paused_at: str | None
    total_paused: float
    total_duration: float | None
    enrichment: dict[str, StageStatus] = field(default_factory=dict)

    def elapsed(self, now: str) -> float:
        """Seconds recorded by `now` (pauses excluded): where the timeline is."""
        if self.total_duration is not None:
            return self.total_duration
        until = parse_time(self.paused_at or now)
        return max(0.0, (until - parse_time(self.start_time)).total_seconds() - self.total_paused)
