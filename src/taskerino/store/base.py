"""The storage contract. Every back end (SQLite, PostgreSQL; folder, S3) implements it whole.

`Store` (metadata) is made of parts, each a small interface of its own so that a back end
can implement and test them one at a time:

- `Transactional` — `transaction()` and `close()`, shared by every part;
- `SessionRows` — sessions, their children and their attachments;
- `LiveCoordination` — who records a live session, heartbeats, stats, commands;
- `BlobIntents` — blob writes in flight (the other half is `MediaLibrary`);
- `Settings` — small JSON values by key;
- `JobQueue` — enrichment jobs with leases, retries and backoff;
- `EnrichmentRows` — the activity track and what the enrichment stages found (OCR,
  transcript, chapters), with each stage's status;
- `SearchIndex` — full-text search over all of a store's text, kept in step with it;
- `Waiting` — waiting for a change (a command, a job, a session's state or stats) instead
  of polling for it.

`BlobStore` (media bytes) stands alone.

Rules every implementation keeps:
- Each write method is atomic on its own; `transaction()` groups several into one
  all-or-nothing change, nests (savepoints) and rolls back on any exception. A method of
  any part called inside `transaction()` joins it.
- Inside `transaction()`, what `session_for_update` read cannot change underneath the
  caller until the transaction ends, also from another process: read-modify-write of a
  session happens there, never as load-then-save.
- Readers never see a half-written change, and never wait for a writer to finish.
- Errors: `NotFound` when a named row does not exist (also a parent row a write refers
  to), `InvalidInput` when an argument is not allowed, `StorageError` for everything the
  back end could not do (a conflicting id, busy past its timeout, disk full, a damaged
  database, a closed store). Nothing else escapes, also not for a damaged database. A
  failed write changed nothing.
"""

from __future__ import annotations

import abc
import contextlib
import io
import random
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Self

from ..errors import InvalidInput, NotFound
from ..models import (
    ActivityEvent,
    Attachment,
    ContextItem,
    Job,
    JobState,
    OcrText,
    RecordingStats,
    RecycledKind,
    SearchHit,
    Session,
    SessionAudioSegment,
    SessionFilter,
    SessionPage,
    SessionScreenshot,
    SessionState,
    SessionStatus,
    SessionSummary,
    SessionVideo,
    SessionVideoChunk,
    StageState,
    TranscriptLine,
    VideoChapter,
)
from ..process import ProcessOwner
from .watch import Topic, Watch

_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(text: str) -> bool:
    """Whether `text` is a SHA-256 as every store writes it: 64 lowercase hex digits."""
    return _DIGEST.fullmatch(text) is not None


def check_digest(digest: str) -> str:
    """`digest` itself; InvalidInput unless it is a SHA-256 (64 lowercase hex digits)."""
    if not is_digest(digest):
        raise InvalidInput(f"invalid digest {digest!r}: expected 64 lowercase hex digits")
    return digest


@dataclass(frozen=True)
class LiveSession:
    """A session marked active or paused, with the process that records it."""

    id: str
    status: SessionStatus
    owner: ProcessOwner | None
    heartbeat: float | None  # unix time of the recorder's last sign of life


@dataclass(frozen=True)
class BlobIntent:
    """A blob write in flight: its bytes may be in place before its attachment row commits."""

    hash: str
    owner: ProcessOwner


@dataclass(frozen=True)
class Backoff:
    """How long a failed job waits before its next attempt.

    After attempt n the ceiling is `base · factor^(n-1)` seconds, at most `cap`; the delay
    is the ceiling shortened by a random part of up to `jitter` of it, so that jobs that
    failed together do not all come back together. `rng` is injectable for tests.
    """

    base: float = 10.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise InvalidInput(
                "backoff needs 0 < base <= cap, factor >= 1 and jitter between 0 and 1, "
                f"not base={self.base}, cap={self.cap}, factor={self.factor}, "
                f"jitter={self.jitter}"
            )

    def ceiling(self, attempt: int) -> float:
        """The longest delay after attempt `attempt` (1 for the first)."""
        try:
            return min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        except OverflowError:
            return self.cap

    def delay(self, attempt: int) -> float:
        """A delay in `[(1 - jitter) · ceiling, ceiling]`."""
        return self.ceiling(attempt) * (1 - self.jitter * self.rng.random())


class Transactional(abc.ABC):
    """What every part of the store shares: one transaction spans all of them."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """An all-or-nothing block around any calls to this store's methods.

        Nested blocks are savepoints: an exception leaving an inner block undoes only that
        block (and propagates). An exception leaving the outermost block undoes all of it.
        Only one transaction at a time is open per store object; another thread entering
        waits for it, and so does another process (its write lock is taken at the start,
        so a read-modify-write inside is serialised). Readers in other threads and
        processes are not held up and do not see the block's changes before it commits.

        Raises StorageError when the transaction cannot start or commit (busy past the
        timeout, disk full, damaged database, closed store); nothing was changed then.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection and handle. Safe to call twice; after it every other
        method raises StorageError (`integrity_problems` reports it instead)."""


class SessionRows(Transactional):
    """Sessions, their children (screenshots, audio segments, video, chunks, context
    items) and the attachments they reference."""

    # --- sessions -----------------------------------------------------------------------
    @abc.abstractmethod
    def create_session(self, session: Session) -> None:
        """Insert the session's own fields (its children are added with their own methods;
        any in `session` are ignored). StorageError if the id is already used; NotFound if
        `audio_attachment_id` names no attachment."""

    @abc.abstractmethod
    def get_session(self, session_id: str) -> Session:
        """The session with all its children, from one consistent snapshot: screenshots,
        audio segments, context items, activity and OCR texts by media offset, transcript
        lines and chapters by start offset, video chunks by index. OCR texts come without
        their word boxes (`words` empty: see `ocr_for`). NotFound if absent."""

    @abc.abstractmethod
    def session_for_update(self, session_id: str) -> Session:
        """Like get_session, and no other writer can change the session until the enclosing
        transaction ends. StorageError outside `transaction()`; NotFound if absent."""

    @abc.abstractmethod
    def update_session(self, session: Session) -> None:
        """Write the session's own fields (everything but its children), by id.

        NotFound if the session does not exist, or `audio_attachment_id` names no
        attachment."""

    @abc.abstractmethod
    def list_sessions(
        self,
        status: SessionStatus | None = None,
        query: str | None = None,
        limit: int | None = None,
    ) -> list[SessionSummary]:
        """Summaries (no children, but their counts), newest `start_time` first, the later
        created first among equal times. `status` keeps one status; `query` keeps sessions
        whose name, description or tags contain it, case-insensitive, taken literally
        (`%` and `_` are no wildcards); `limit` keeps the first that many."""

    # --- children -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_screenshot(self, shot: SessionScreenshot) -> None:
        """Insert. NotFound if its session or attachment does not exist; StorageError if
        the id is already used."""

    @abc.abstractmethod
    def update_screenshot(self, shot: SessionScreenshot) -> None:
        """Write `user_comment`, `flagged`, `ocr_text` and `analysis_status` (the other
        fields never change). NotFound if the screenshot does not exist."""

    @abc.abstractmethod
    def add_audio_segment(self, segment: SessionAudioSegment) -> None:
        """Insert. NotFound if its session or attachment does not exist; StorageError if
        the id is already used."""

    @abc.abstractmethod
    def save_video(self, video: SessionVideo) -> None:
        """Insert the session's video row, or update it when the id exists: then only
        `full_video_attachment_id`, `duration` and `chunking_status` change. Its chunks and
        chapters are not written here. NotFound if the session or the full video's
        attachment does not exist; StorageError if the session already has another video."""

    @abc.abstractmethod
    def add_video_chunk(self, chunk: SessionVideoChunk) -> None:
        """Insert. NotFound if its video or attachment does not exist; StorageError if the
        id, or the index within its video, is already used."""

    @abc.abstractmethod
    def add_context_item(self, item: ContextItem) -> None:
        """Insert a note, task or marker. NotFound if its session does not exist;
        StorageError if the id is already used."""

    # --- attachments --------------------------------------------------------------------
    @abc.abstractmethod
    def add_attachment(self, attachment: Attachment) -> Attachment:
        """Insert the row and return it; when a row with the same hash exists, nothing is
        inserted and that row is returned instead (its id is the one to reference).

        InvalidInput if `hash` is not a SHA-256 (64 lowercase hex digits); StorageError if
        the id is already used by a row with another hash."""

    @abc.abstractmethod
    def get_attachment(self, attachment_id: str) -> Attachment:
        """NotFound if absent."""

    @abc.abstractmethod
    def attachment_by_hash(self, digest: str) -> Attachment | None:
        """The row holding this content, or None."""

    @abc.abstractmethod
    def attachments_for(self, session_id: str) -> list[Attachment]:
        """Every attachment the session references (screenshots, audio segments, its joined
        audio, full video, video chunks, chapter thumbnails), each once, in no particular
        order. Empty for an unknown session."""

    @abc.abstractmethod
    def attachment_hashes(self) -> set[str]:
        """The hashes of all attachment rows."""

    # --- reading for review (a default from the methods above; back ends do it faster) ---
    def find_sessions(self, filter: SessionFilter) -> SessionPage:
        """One page of the sessions that match `filter`, in its order, with the number that
        match in all and the first screenshot of each session on the page."""
        rows = [
            s
            for s in self.list_sessions()
            if (not filter.statuses or s.status in filter.statuses)
            and (filter.query is None or _matches(s, filter.query))
            and (filter.since is None or s.start_time >= filter.since)
            and (filter.until is None or s.start_time < filter.until)
            and (filter.tag is None or filter.tag in s.tags)
        ]
        if filter.sort == "oldest":
            rows.reverse()
        elif filter.sort in ("longest", "shortest"):
            rows.sort(key=lambda s: s.total_duration or 0.0, reverse=filter.sort == "longest")
        elif filter.sort == "name":
            rows.sort(key=lambda s: s.name.casefold())
        page = rows[filter.offset : filter.offset + filter.limit]
        thumbnails = {}
        for summary in page:
            if summary.screenshot_count:
                shots = self.get_session(summary.id).screenshots
                if shots:
                    thumbnails[summary.id] = shots[0].attachment_id
        return SessionPage(page, len(rows), filter.limit, filter.offset, thumbnails)

    def session_state(self, session_id: str) -> SessionState:
        """The changing fields of one session, without its children. NotFound if absent."""
        s = self.get_session(session_id)
        return SessionState(
            s.id,
            s.status,
            s.start_time,
            s.paused_at,
            s.total_paused,
            s.total_duration,
            s.enrichment,
        )

    def screenshot_session(self, screenshot_id: str) -> str:
        """The id of the session a screenshot belongs to. NotFound if there is none."""
        for summary in self.list_sessions():
            if summary.screenshot_count and any(
                shot.id == screenshot_id for shot in self.get_session(summary.id).screenshots
            ):
                return summary.id
        raise NotFound(f"no screenshot {screenshot_id!r}")

    @abc.abstractmethod
    def remove_media(self, session_id: str, kind: RecycledKind) -> list[str]:
        """Delete the rows of one kind of the session's media (the storage budget):
        `video_chunks` its video's chunk rows, `full_video` its video's reference to the
        full video (the video row stays, with `full_video_attachment_id` None),
        `screenshots` its screenshot rows (OCR texts found in them stay, with
        `screenshot_id` None). Returns the ids of the attachments they referenced, each
        once. Only those rows: the attachment rows and blobs are the caller's to delete
        in the same transaction (see `MediaLibrary.release`). Nothing to remove is fine.

        NotFound if the session does not exist; InvalidInput for another `kind`."""

    @abc.abstractmethod
    def delete_attachment(self, attachment_id: str) -> Attachment | None:
        """Delete the attachment row unless a row of any session references it; the row
        deleted, or None when it is still referenced (then kept) or absent. Only the row:
        its blob is the caller's to delete (see `MediaLibrary.discard`)."""


class LiveCoordination(Transactional):
    """What processes tell each other about live sessions: who records one, whether it
    still lives, how the recording goes, and what it is asked to do."""

    @abc.abstractmethod
    def live_sessions(self) -> list[LiveSession]:
        """Sessions whose status is active or paused, in no particular order."""

    @abc.abstractmethod
    def set_recorder(self, session_id: str, owner: ProcessOwner | None) -> None:
        """Record which process records the session (None: nobody). NotFound if the session
        does not exist."""

    @abc.abstractmethod
    def heartbeat(self, session_id: str, at: float) -> None:
        """The recorder is alive at unix time `at`. NotFound if the session does not exist."""

    @abc.abstractmethod
    def write_stats(self, stats: RecordingStats) -> None:
        """Replace the session's latest recording stats with `stats`, every field kept.
        NotFound if the session does not exist."""

    @abc.abstractmethod
    def read_stats(self, session_id: str) -> RecordingStats | None:
        """The stats last written for the session, equal to what was written; None if none
        were."""

    @abc.abstractmethod
    def push_command(self, session_id: str, command: str) -> None:
        """Queue a command (pause, resume, end: the store does not interpret it) for the
        recorder of a session, maybe in another process. NotFound if the session does not
        exist."""

    @abc.abstractmethod
    def take_commands(self, session_id: str) -> list[str]:
        """Remove and return the session's pending commands, oldest first. Two callers never
        get the same command. Cheap when there is none: a recorder looks each time a
        `Topic.commands` watch wakes, and once a second besides."""


class BlobIntents(Transactional):
    """Blob writes in flight, so that recovery can tell a dead writer's leftover from a
    live writer's work (see `MediaLibrary`)."""

    @abc.abstractmethod
    def add_blob_intent(self, intent: BlobIntent) -> None:
        """Record the intent; recording the same one again changes nothing."""

    @abc.abstractmethod
    def remove_blob_intent(self, digest: str, owner: ProcessOwner) -> None:
        """Forget the owner's intent for the digest; absent is fine. Other owners' intents
        for the same digest stay."""

    @abc.abstractmethod
    def blob_intents(self) -> list[BlobIntent]:
        """Every recorded intent, in no particular order."""


class Settings(Transactional):
    """Small values by key, kept as JSON."""

    @abc.abstractmethod
    def get_setting(self, key: str) -> object | None:
        """The value last set (as JSON gives it back: tuples come back as lists); None when
        never set."""

    @abc.abstractmethod
    def set_setting(self, key: str, value: object) -> None:
        """Set or replace. InvalidInput if the value cannot be written as JSON."""


class JobQueue(Transactional):
    """Enrichment jobs (spec §5), claimed by workers with a lease.

    A job is `queued` until a worker claims it, then `running` under the worker's lease
    until the worker completes it (`done`), fails it (`queued` again after a backoff, or
    `failed` after its last attempt) or releases it (`queued`). A worker renews its lease
    while it works; a lease that runs out lets another worker claim the job again (the
    first worker died or stalled), and from then on the first worker's calls on the job
    raise LeaseLost and change nothing — so two workers never finish the same job.

    Time comes from the `now` arguments (unix seconds), never from the store's clock, so
    every worker must use a clock close to the others'. `owner` is any text that tells
    workers apart. Claims are atomic across threads, processes and machines. Every method
    joins an enclosing `transaction()`: a stage's results and its `complete_job` commit
    together, and a LeaseLost raised there undoes the results too.
    """

    @abc.abstractmethod
    def enqueue_job(self, session_id: str, kind: str, *, now: float) -> Job:
        """A new queued job, due at `now` — unless the session already has an active
        (queued or running) job of that kind: then that job, unchanged. A done or failed
        job does not count: the kind may be run again.

        NotFound if the session does not exist; InvalidInput if `kind` is empty."""

    @abc.abstractmethod
    def claim_job(
        self,
        owner: str,
        *,
        lease_seconds: float,
        now: float,
        kinds: Sequence[str] | None = None,
        max_attempts: int | None = None,
    ) -> Job | None:
        """Take the job due first and run it under a lease until `now + lease_seconds`;
        None when no job is due.

        Due are queued jobs whose `run_at` is not after `now`, and running jobs whose lease
        has run out (their worker stalled or died); among them the smallest `run_at` first,
        then the first enqueued. `kinds` limits the claim to those kinds. The claim adds one
        to `attempt`. With `max_attempts`, a running job whose lease ran out after its last
        attempt is not claimed again but marked failed (its worker kept dying on it).

        InvalidInput if `lease_seconds` is not positive or `max_attempts` is below 1."""

    @abc.abstractmethod
    def renew_job(self, job_id: str, owner: str, *, lease_seconds: float, now: float) -> bool:
        """Extend the owner's lease to `now + lease_seconds`. False, changing nothing, when
        the owner holds no lease on the job any more (it ran out or was taken over).

        NotFound if the job does not exist; InvalidInput if `lease_seconds` is not
        positive."""

    @abc.abstractmethod
    def complete_job(self, job_id: str, owner: str, *, now: float) -> None:
        """Mark the job done at `now` and end the lease.

        LeaseLost if the owner's lease ran out (also if nobody took it over yet) or is
        another's; NotFound if the job does not exist."""

    @abc.abstractmethod
    def fail_job(
        self,
        job_id: str,
        owner: str,
        error: str,
        *,
        now: float,
        max_attempts: int,
        backoff: Backoff,
    ) -> Job:
        """Record `error` as the job's `last_error` and end the lease; the job as it is now.

        When `attempt` is below `max_attempts` the job is queued again, due at
        `now + backoff.delay(attempt)`; else it is `failed` (finished at `now`).
        LeaseLost and NotFound as for `complete_job`; InvalidInput if `max_attempts` is
        below 1."""

    @abc.abstractmethod
    def release_job(self, job_id: str, owner: str) -> None:
        """Give the job back unfinished (a worker shutting down cleanly): queued again, due
        at once, and the claim does not count as an attempt.

        LeaseLost if the job is not running under this owner's lease (a lease that ran out
        but was not taken over may still be released); NotFound if the job does not
        exist."""

    @abc.abstractmethod
    def next_due(self, kinds: Sequence[str] | None = None) -> float | None:
        """When a job (of `kinds`) may next be claimed: the earliest `run_at` of a queued
        job or `lease_until` of a running one (unix seconds, maybe past); None when no job
        is queued or running. An idle worker waits until then at the latest."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job:
        """NotFound if absent."""

    @abc.abstractmethod
    def list_jobs(self, state: JobState | None = None, session_id: str | None = None) -> list[Job]:
        """Jobs in the order they were enqueued, optionally only those in one state or of
        one session."""


class EnrichmentRows(Transactional):
    """The activity track recorded with a session, and what the enrichment stages found.

    Each stage owns its output for a session and writes it whole with one `replace_*`
    call: running a stage again (after a crash, or with a better engine) leaves exactly the
    rows of its last run, never duplicates. Inside `transaction()` a stage's results, its
    status and its job's completion commit together.

    Every row names its session: a row whose `session_id` is not the session being written
    is InvalidInput. NotFound when the session (or a screenshot or attachment a row refers
    to) does not exist; StorageError when an id is used twice (a failed call changed
    nothing).
    """

    @abc.abstractmethod
    def add_activity(self, event: ActivityEvent) -> None:
        """Insert one change of the focused window. NotFound if its session does not exist;
        StorageError if the id is already used."""

    @abc.abstractmethod
    def replace_ocr(self, session_id: str, texts: Sequence[OcrText]) -> None:
        """Make `texts` (with their word boxes) the session's whole OCR output."""

    @abc.abstractmethod
    def ocr_for(self, session_id: str) -> list[OcrText]:
        """The session's OCR texts with their word boxes, by media offset. NotFound if the
        session does not exist."""

    @abc.abstractmethod
    def replace_transcript(self, session_id: str, lines: Sequence[TranscriptLine]) -> None:
        """Make `lines` the session's whole transcript. InvalidInput for a line that ends
        before it starts or whose `source` is not mic, system or mixed."""

    @abc.abstractmethod
    def replace_chapters(self, session_id: str, chapters: Sequence[VideoChapter]) -> list[str]:
        """Make `chapters` the whole chapter list of the session's video; NotFound if the
        session has no video.

        Returns the ids of the thumbnails (attachments) that the replaced chapters used and
        that no row references any more. Their rows are kept, so that no blob is ever
        without its row: the caller deletes them after its transaction commits, with
        `MediaLibrary.discard`. If it never does, they stay as unused attachments: space
        lost, nothing broken."""

    @abc.abstractmethod
    def set_stage_status(
        self, session_id: str, stage: str, status: StageState, error: str | None = None
    ) -> None:
        """Set `Session.enrichment[stage]` to `status` with `error` (for a failed stage, why),
        now. Other stages and the session's other fields are left as they are.

        InvalidInput if `stage` is not a name of lowercase letters, digits, `-` and `_`
        (at most 64), or `status` is not pending, running, done or failed; NotFound if the
        session does not exist."""


class SearchIndex(Transactional):
    """Full-text search over the text of every session: OCR texts, transcript lines,
    activity (window title and application), context items (notes, tasks, markers: kind
    `note`), screenshot comments (kind `comment`) and session names with their description
    (kind `session`).

    The index follows every committed change on its own: text written by any method of the
    store, in this process or another, is found by the next search once it commits, and text
    replaced or removed is no longer found. Words match case- and accent-insensitively
    ("Cafe" finds "café").
    """

    @abc.abstractmethod
    def reindex_session(self, session_id: str) -> int:
        """Rebuild the session's entries of the index from its rows (the index is kept in
        step as rows change; this repairs it if it ever was not). Returns how many entries
        the session has. Idempotent; joins an enclosing transaction."""

    @abc.abstractmethod
    def search(
        self, query: str, *, session_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SearchHit]:
        """The hits of `query`, best first; with `session_id`, only that session's.
        `limit` and `offset` page through them. A back end may rank a query that matches
        a very large number of items (a word in nearly every text) among its most recently
        indexed matches only, to answer in time; the SQLite store does so beyond 10 000.

        A query is words (all must match), `"phrases"` in double quotes, `prefix*`, joined
        if wanted with AND, OR, NOT (in capitals) and parentheses: the query syntax of
        SQLite's FTS5 over the one column the text is in. InvalidInput for a query that is
        empty, malformed (an unbalanced quote or parenthesis, an operator without its
        operands, a lone `*`, punctuation outside quotes), longer than the rule book
        allows, or for `limit` outside 1 to 1000 or a negative `offset`; the message says
        what is allowed. An unknown `session_id` has no hits."""


class Waiting(Transactional):
    """Waiting for changes that other processes commit, instead of polling for them.

    The topics (`Topic`): a session's commands (`push_command`), the job queue (a job
    became queued: `enqueue_job`, `release_job`, `fail_job` with a retry to come), a
    session's state (`create_session`, `update_session`, `set_stage_status`: its status,
    pause, end, name or enrichment) and a session's stats (`write_stats`). A change is
    announced when its transaction commits, never before, and never when it rolls back.

    What a wake means differs by back end, and callers must not rely on more than this:
    - PostgreSQL: LISTEN on a connection of its own, the writes NOTIFY inside their
      transactions (triggers), so a wake is a change of a watched topic, delivered within
      milliseconds of its commit on any machine. The listening connection reconnects by
      itself; while the database is away a wait runs to its timeout, and after a
      reconnection every watch wakes once (changes may have been missed meanwhile).
    - SQLite (one machine): the store looks at the database's `data_version` ten times a
      second on a connection of its own; any commit by another connection, in this
      process or another, wakes every watch. Wakes are prompt but not specific.

    So a wake says "look again", a timeout says "nothing seen": a caller keeps its
    timeout bounded (a lost wake costs at most that long) and looks at what it waits for
    after each wait, whatever it returned.
    """

    @abc.abstractmethod
    def watch(self, topics: Sequence[Topic]) -> Watch:
        """Start watching `topics` now: a change committed after this returns makes the
        next `Watch.wait` return True (at once if it came before the wait). Close the watch
        when done. InvalidInput for no topic; StorageError on a closed store. Never waits
        for the database: when it cannot be reached the watch's waits run to their
        timeouts until it is back."""

    def wait_for(
        self, topics: Sequence[Topic], timeout: float, stop: threading.Event | None = None
    ) -> bool:
        """Wait up to `timeout` seconds for a change of one of `topics` committed after
        this call began: True when one came (maybe spuriously, see above), False at the
        timeout or when `stop` was set. Never raises for the database being away. A change
        committed just before the call is not seen: to wait for something after looking
        at it, make a `watch` first."""
        with self.watch(topics) as watch:
            return watch.wait(timeout, stop)


class Store(
    SessionRows,
    LiveCoordination,
    BlobIntents,
    Settings,
    JobQueue,
    EnrichmentRows,
    SearchIndex,
    Waiting,
):
    """Session metadata: all the parts above, sharing one transaction."""

    # A store behind a server (PostgreSQL) can be away for a while: recorders then keep
    # their media in staging and store it once the server is back (`Uploads`).
    served = False

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str) -> Self:
        """Open the store a URL names (the registry hands each back end the URLs of its
        schemes). InvalidInput if the URL is malformed; StorageError if the store cannot be
        opened."""

    @abc.abstractmethod
    def integrity_problems(self) -> list[str]:
        """Database-level problems (damage, broken references), each a sentence; empty when
        healthy. Never raises for a damaged database: the damage is the answer."""


def _matches(summary: SessionSummary, query: str) -> bool:
    text = query.casefold()
    return any(
        text in field.casefold() for field in (summary.name, summary.description, *summary.tags)
    )


class BlobStore(abc.ABC):
    """Media bytes addressed by their SHA-256 (64 lowercase hex digits). Every method given
    another digest raises InvalidInput, so that names from users never become paths.
    StorageError when the bytes cannot be read or written."""

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str) -> Self:
        """Open the blob store a URL names. InvalidInput if the URL is malformed;
        StorageError if the store cannot be opened."""

    @abc.abstractmethod
    def put_file(self, source: Path, digest: str, *, move: bool = False) -> int:
        """Store the file's bytes under `digest` (temp name, fsync, rename); return the size.

        The digest is the caller's word for the content: it is not recomputed. With `move`
        the source may be consumed (renamed into place when on the same disk), else it is
        left as it is. An existing blob with the same digest is kept and the source is then
        left alone. Once this returns the bytes survive a crash. A failure leaves no blob
        and at most a temporary file that `remove_stale_temp` removes."""

    @abc.abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether a blob is stored under the digest."""

    @abc.abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """The bytes, for reading (the caller closes it). NotFound if absent."""

    def open_range(self, digest: str, start: int, end: int) -> BinaryIO:
        """Bytes `start` to `end` (exclusive) of the blob, for reading (the caller closes
        it); fewer when the blob is shorter. NotFound if absent. Back ends whose bytes are
        remote ask only for that range."""
        with self.open(digest) as whole:
            whole.seek(start)
            return io.BytesIO(whole.read(max(0, end - start)))

    @abc.abstractmethod
    def local_path(self, digest: str) -> Path | None:
        """The file that holds or would hold the bytes when blobs live on this machine's
        disk, else None (the path may not exist: check `exists`)."""

    @abc.abstractmethod
    def delete(self, digest: str) -> None:
        """Remove the blob; absent is fine."""

    @abc.abstractmethod
    def digests(self) -> Iterator[str]:
        """Every stored digest, each once, in no particular order (temporary files of
        writes in flight are not blobs)."""

    def sizes(self) -> dict[str, int]:
        """Every stored digest with its size in bytes (a back end whose bytes are remote
        answers from one listing)."""
        found = {}
        for digest in self.digests():
            path = self.local_path(digest)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    found[digest] = path.stat().st_size
            else:
                with self.open(digest) as f:
                    found[digest] = f.seek(0, io.SEEK_END)
        return found

    @abc.abstractmethod
    def remove_stale_temp(self) -> list[str]:
        """Delete the temporary files of writers that are gone (a live writer's are kept);
        return the names removed."""
