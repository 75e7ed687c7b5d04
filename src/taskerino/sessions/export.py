"""Export of a session: to a folder (`taskerino export`) or as a zip streamed by the web app.

The files, by format (`rules.EXPORT_FORMATS`):
- `mp4`: `video.mp4`, the full video with the session's audio in it. The stored full video
  already has the audio muxed in when both were recorded; it is then copied as it is, else
  video and audio are remuxed into one MP4 (the video is never re-encoded);
- `json`: `session.json`, the session as the API's session view gives it;
- `srt`, `vtt`: `transcript.srt`, `transcript.vtt`;
- `md`: `summary.md`, chapters with their times, notes and flagged screenshots with their
  comments, each linking to its moment;
- `screenshots`: `screenshots/NNN-NAME`, NAME the screenshot's stored file name.

Every name is checked (`safe_name`): a name from the store never becomes a path outside
the export. Files are written on demand by each `ExportFile.write`, so a zip can be
streamed file by file without holding the export in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import user_umask
from ..errors import InvalidInput, StorageError
from ..models import Attachment, Session
from ..rules import check_export_formats
from ..store.media import MediaLibrary
from .budget import RECYCLED_NAMES
from .views import review_json

BLOCK = 1 << 16


class Sink(Protocol):
    """Where an export file's bytes go: a file, or an entry of a zip."""

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class ExportFile:
    """One file of an export: its name (relative, `/`-separated) and how to write it."""

    name: str
    write: Callable[[Sink], None]


@dataclass(frozen=True)
class Export:
    session: Session
    data: dict[str, Any]  # the session as `sessions show --json` gives it
    media: MediaLibrary


def safe_name(name: str) -> str:
    """`name` when it is a relative path that stays inside the export folder: parts that
    are not empty, `.` or `..`, no backslash, no control character. InvalidInput else."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 32 or c == "\x7f" for c in name)
    ):
        raise InvalidInput(
            f"refusing to export a file named {name!r}: an export's names must stay inside "
            "its folder (no '..', no leading '/', no backslash)"
        )
    return name


def export_files(export: Export, formats: Iterable[str] = ()) -> list[ExportFile]:
    """The files of the export in `formats` (all of them when empty). InvalidInput for an
    unknown format or an unsafe name, before anything is written."""
    wanted = check_export_formats(formats)
    session = export.session
    attachments = {a["id"]: a for a in export.data["attachments"].values()}
    video = _full_video(export)
    files: list[ExportFile] = []
    if "mp4" in wanted and video is not None:
        files.append(ExportFile("video.mp4", lambda out: _write_video(export, video, out)))
    if "json" in wanted:
        view = review_json(json.loads(json.dumps(export.data)))
        text = json.dumps(view, indent=2, ensure_ascii=False) + "\n"
        files.append(ExportFile("session.json", _text(text)))
    if "srt" in wanted:
        files.append(ExportFile("transcript.srt", _text(srt(session))))
    if "vtt" in wanted:
        files.append(ExportFile("transcript.vtt", _text(vtt(session))))
    shots = screenshot_names(session, attachments) if "screenshots" in wanted else {}
    if "md" in wanted:
        with_video = "mp4" in wanted and video is not None
        files.append(ExportFile("summary.md", _text(markdown(session, shots, with_video))))
    for shot in session.screenshots:
        if shot.id in shots:
            attachment = export.media.store.get_attachment(shot.attachment_id)
            files.append(ExportFile(shots[shot.id], _blob(export.media, attachment)))
    for f in files:
        safe_name(f.name)
    return files


def screenshot_names(session: Session, attachments: dict[str, Any]) -> dict[str, str]:
    """Screenshot id -> its name in the export (`screenshots/NNN-NAME`)."""
    names = {}
    for i, shot in enumerate(session.screenshots, 1):
        stored = attachments.get(shot.attachment_id, {}).get("name") or f"{shot.id}.webp"
        if "/" in safe_name(stored):  # one file name, not a path
            raise InvalidInput(
                f"refusing to export a file named {stored!r}: an export's names must stay "
                "inside its folder (no '..', no '/')"
            )
        names[shot.id] = safe_name(f"screenshots/{i:03d}-{stored}")
    return names


def write_folder(files: list[ExportFile], folder: Path, *, force: bool = False) -> list[Path]:
    """Write the files into `folder` (made if missing), with the permissions the user's
    umask gives. Without `force`, InvalidInput naming the files that exist, before
    anything is written. Each file is written to a temporary name, then renamed."""
    targets = [(f, folder.joinpath(*safe_name(f.name).split("/"))) for f in files]
    base = folder.resolve()
    for _, path in targets:
        if not path.resolve().is_relative_to(base):
            raise InvalidInput(f"refusing to write {path}: it is outside {folder}")
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"cannot export to {folder}: it is not a folder")
    existing = [str(path) for _, path in targets if path.exists() or path.is_symlink()]
    if existing and not force:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        shown = ", ".join(existing[:3]) + more
        raise InvalidInput(f"refusing to overwrite {shown}: pass --force to replace them")
    mask = user_umask()
    written: list[Path] = []
    made: list[Path] = []
    try:
        for f, path in targets:
            made += _make_folders(path.parent, mask)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                with tmp.open("wb") as out:
                    f.write(out)
                os.chmod(tmp, 0o666 & ~mask)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(path)
    except BaseException as exc:
        # Nothing half done is left behind: what this export wrote, and the folders it made.
        for path in written:
            if str(path) not in existing:  # a file it replaced (--force) stays replaced
                path.unlink(missing_ok=True)
        for made_folder in reversed(made):
            with contextlib.suppress(OSError):
                made_folder.rmdir()
        if isinstance(exc, OSError):
            raise StorageError(f"could not write the export to {folder}: {exc}") from exc
        raise
    return written


def _make_folders(path: Path, mask: int) -> list[Path]:
    """Make `path` and its missing parents with the permissions the user's umask gives;
    the folders made, outermost first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    made = []
    for folder in reversed(missing):
        folder.mkdir()
        made.append(folder)
        os.chmod(folder, 0o777 & ~mask)
    return made


def zip_stream(files: list[ExportFile], top: str) -> Generator[bytes, None, None]:
    """The files as a zip (under folder `top`), produced piece by piece: `zipfile` writes
    into a bounded pipe from a thread of its own and each piece is yielded as it comes, so
    neither the zip nor a whole file is ever held in memory. Closing the iterator early
    (the client went away) stops the writer."""
    names = [f"{safe_name(top)}/{safe_name(f.name)}" for f in files]
    pieces: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=PIPE_PIECES)
    stop = threading.Event()
    pipe = _Pipe(pieces, stop)

    def produce() -> None:
        try:
            with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for f, name in zip(files, names, strict=True):
                    info = zipfile.ZipInfo(name, time.gmtime()[:6])
                    # Video and pictures are compressed already: stored, they cost no CPU.
                    info.compress_type = (
                        zipfile.ZIP_STORED if _compressed(f.name) else zipfile.ZIP_DEFLATED
                    )
                    info.external_attr = 0o644 << 16
                    with archive.open(info, "w", force_zip64=True) as entry:
                        f.write(entry)
            pieces.put(None)
        except _Stopped:
            pass  # the reader went away: nothing more to write
        except BaseException as exc:  # handed to the reader, which raises it
            pieces.put(exc)

    writer = threading.Thread(target=produce, name="export-zip", daemon=True)
    writer.start()
    try:
        while (item := pieces.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while writer.is_alive():  # unblock a writer waiting for room in the pipe
            with contextlib.suppress(queue.Empty):
                pieces.get(timeout=0.1)
        writer.join()


PIPE_PIECES = 16  # pieces in flight between the zip writer and the response


def _compressed(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in ("mp4", "webp", "jpg", "png")


class _Stopped(Exception):
    """The reader of a zip stream went away."""


class _Pipe:
    """A write-only stream for `zipfile` whose writes go to a bounded queue."""

    def __init__(self, pieces: queue.Queue[bytes | BaseException | None], stop: threading.Event):
        self._pieces = pieces
        self._stop = stop
        self._size = 0

    def write(self, data: bytes) -> int:
        if self._stop.is_set():
            raise _Stopped
        if data:
            self._pieces.put(bytes(data))
            self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Nothing to flush: every write is already handed to the reader."""

    def close(self) -> None:
        """The pipe stays open for the reader; the writer ends it with None."""


def _text(text: str) -> Callable[[Sink], None]:
    data = text.encode("utf-8")

    def write(out: Sink) -> None:
        out.write(data)

    return write


def _blob(media: MediaLibrary, attachment: Attachment) -> Callable[[Sink], None]:
    def write(out: Sink) -> None:
        with media.blobs.open(attachment.hash) as source:
            shutil.copyfileobj(source, out, BLOCK)

    return write


# --- video ------------------------------------------------------------------------------
def _full_video(export: Export) -> Attachment | None:
    video = export.session.video
    if video is None or video.full_video_attachment_id is None:
        return None
    return export.media.store.get_attachment(video.full_video_attachment_id)


def _write_video(export: Export, video: Attachment, out: Sink) -> None:
    from ..media.chunks import join_chunks, probe_video

    audio_id = export.session.audio_attachment_id
    with (
        tempfile.TemporaryDirectory(prefix="taskerino-export-") as scratch,
        _local(export.media, video, Path(scratch)) as video_path,
    ):
        if audio_id is None or probe_video(video_path).has_audio:
            with video_path.open("rb") as source:
                shutil.copyfileobj(source, out, BLOCK)
            return
        audio = export.media.store.get_attachment(audio_id)
        with _local(export.media, audio, Path(scratch)) as audio_path:
            joined = Path(scratch) / "video.mp4"
            join_chunks([video_path], joined, audio_path)  # remux: no re-encoded frame
            with joined.open("rb") as source:
                shutil.copyfileobj(source, out, BLOCK)


@contextmanager
def _local(media: MediaLibrary, attachment: Attachment, scratch: Path) -> Iterator[Path]:
    """A local file of the attachment's bytes (a copy when the blob store is remote)."""
    path = media.local_path(attachment)
    if path is not None and path.is_file():
        yield path
        return
    copy = scratch / attachment.hash
    with copy.open("wb") as out:
        _blob(media, attachment)(out)
    yield copy


# --- transcript -------------------------------------------------------------------------
def _stamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(text: str) -> str:
    # One line; a blank line or an arrow would end or break the cue.
    return " ".join(text.split()).replace("-->", "->")


def _cues(session: Session) -> list[tuple[float, float, str]]:
    cues = []
    for line in session.transcript:
        text = _cue_text(line.text)
        if text:
            cues.append((line.start_offset, max(line.end_offset, line.start_offset), text))
    return cues


def srt(session: Session) -> str:
    """The transcript as SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`."""
    blocks = [
        f"{i}\n{_stamp(start, ',')} --> {_stamp(end, ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(session), 1)
    ]
    return "\n".join(blocks)


def vtt(session: Session) -> str:
    """The transcript as WebVTT (`&`, `<` and `>` escaped as the format asks)."""
    blocks = ["WEBVTT\n"]
    for start, end, text in _cues(session):
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{_stamp(start, '.')} --> {_stamp(end, '.')}\n{escaped}\n")
    return "\n".join(blocks)


# --- summary ----------------------------------------------------------------------------
def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _md(text: str) -> str:
    """User text on one Markdown line, its markup characters escaped."""
    line = " ".join(text.split())
    for c in "\\`*_[]<>#|!":
        line = line.replace(c, "\\" + c)
    return line


def moment_links(session_id: str, seconds: float, with_video: bool) -> str:
    """Markdown links to a moment: the exported video, and the session's review page."""
    t = f"{seconds:.3f}".rstrip("0").rstrip(".")
    review = f"[review](/sessions/{session_id}?t={t})"
    return (
        f"[{clock(seconds)}](video.mp4#t={t}) · {review}"
        if with_video
        else (f"{clock(seconds)} · {review}")
    )


def markdown(session: Session, shots: dict[str, str], with_video: bool) -> str:
    sid = session.id
    lines = [f"# {_md(session.name) or 'Session ' + sid}", ""]
    if session.description:
        lines += [_md(session.description), ""]
    lines += [
        f"- Session: `{sid}` ({session.status})",
        f"- Started: {session.start_time}; ended: {session.end_time or '-'}",
        f"- Duration: {clock(session.total_duration or 0.0)}",
        "",
        (
            "Each moment links to `video.mp4#t=SECONDS` (the exported video at that second, "
            "a media fragment browsers and most players follow) and to "
            if with_video
            else "Each moment links to "
        )
        + "`/sessions/ID?t=SECONDS`, the moment on the session's review page: append it to "
        "the address `taskerino serve` prints.",
        "",
    ]
    chapters = session.video.chapters if session.video else []
    lines += ["## Chapters", ""]
    for ch in chapters:
        lines.append(
            f"- {moment_links(sid, ch.start_offset, with_video)} to {clock(ch.end_offset)}: "
            f"**{_md(ch.title)}**" + (f" — {_md(ch.summary)}" if ch.summary else "")
        )
    lines += ["- none"] if not chapters else []
    lines += ["", "## Notes", ""]
    for item in session.context_items:
        lines.append(
            f"- {moment_links(sid, item.media_offset, with_video)} {item.type}: {_md(item.content)}"
        )
    lines += ["- none"] if not session.context_items else []
    lines += ["", "## Flagged screenshots", ""]
    flagged = [s for s in session.screenshots if s.flagged]
    for shot in flagged:
        comment = _md(shot.user_comment or "") or "(no comment)"
        lines.append(f"- {moment_links(sid, shot.media_offset, with_video)} {comment}")
        if shot.id in shots:
            lines.append(f"  ![screenshot at {clock(shot.media_offset)}]({shots[shot.id]})")
    lines += ["- none"] if not flagged else []
    if session.recycled:
        lines += ["", "## Removed by the storage budget", ""]
        lines += [
            f"- {r.at}: {r.count} {RECYCLED_NAMES[r.kind]}, {r.bytes} bytes"
            for r in session.recycled
        ]
    return "\n".join(lines) + "\n"
