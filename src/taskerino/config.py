"""Where Taskerino keeps its data: flag > TASKERINO_HOME > the platform's user data folder."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInput

HOME_ENV = "TASKERINO_HOME"


def default_home() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Taskerino"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "Taskerino"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "taskerino"


RESERVE_BYTES = 16 << 20  # what ending a session may need when the disk is full


@dataclass(frozen=True)
class Layout:
    """The files of one data folder."""

    home: Path

    @property
    def database(self) -> Path:
        return self.home / "taskerino.db"

    @property
    def blobs(self) -> Path:
        return self.home / "blobs"

    @property
    def reserve(self) -> Path:
        """Space set aside so that a session can still be ended when the disk fills up."""
        return self.home / "reserve.bin"

    def disk_free(self) -> int:
        """Bytes free on the disk of the data folder (where live recordings write)."""
        return shutil.disk_usage(self.home).free

    @property
    def staging(self) -> Path:
        """Media being written by live recorders, before it becomes a blob."""
        return self.home / "staging"


# Screen recordings, audio and transcripts are a person's own: owner-only, whatever the umask.
PRIVATE_UMASK = 0o077
OTHERS = 0o077  # the group and other permission bits
_USER_UMASK: list[int] = []  # the umask the process started with, once it was replaced


def make_private() -> None:
    """Owner-only files from now on in this process (the umask), remembering the user's
    own umask for what goes elsewhere: exported files follow the user's choice."""
    previous = os.umask(PRIVATE_UMASK)
    if not _USER_UMASK:
        _USER_UMASK.append(previous)


def user_umask() -> int:
    """The umask the user gave this process (also after `make_private`)."""
    if _USER_UMASK:
        return _USER_UMASK[0]
    current = os.umask(0)
    os.umask(current)
    return current


# What Taskerino keeps in a data folder (the database with its -wal/-shm files, too).
OWN_NAMES = frozenset({"blobs", "staging", "reserve.bin", "errors.log", "web-token"})


def _is_own(name: str) -> bool:
    return name.startswith("taskerino.db") or name in OWN_NAMES


def _private_scope(home: Path, *, open_only: bool) -> list[Path]:
    """What privacy covers: the folder and all in it when it holds only Taskerino's files;
    else Taskerino's own entries, whole. A folder that also holds other files (someone's
    home, a project) keeps its permissions and theirs: they are not Taskerino's to change.
    `open_only`: only below a root others can reach (what a 0700 folder holds is safe)."""
    try:
        entries = list(home.iterdir())
    except OSError:
        return []
    own = [p for p in entries if _is_own(p.name)]
    roots = [home] if len(own) == len(entries) else own
    scope: list[Path] = []
    for root in roots:
        try:
            if root.is_symlink() or (open_only and not root.lstat().st_mode & OTHERS):
                continue
        except OSError:
            continue
        scope.append(root)
        if root.is_dir():
            scope.extend(root.rglob("*"))
    return scope


def keep_private(home: Path) -> list[str]:
    """Owner-only access to what Taskerino keeps (0700 folders, 0600 files).

    New files are kept private by the process umask (set by `Taskerino.open`); what an
    older version left open to others is tightened here, once. Returns what was changed.
    """
    changed = []
    for path in _private_scope(home, open_only=True):
        try:
            mode = path.lstat().st_mode
            if path.is_symlink() or not mode & OTHERS:
                continue
            path.chmod(0o700 if path.is_dir() else 0o600)
            changed.append(str(path))
        except OSError:
            continue  # vanished meanwhile, or not ours: doctor reports what stays open
    return changed


def readable_by_others(home: Path) -> list[str]:
    """What Taskerino keeps that another account could read or enter."""
    found = []
    for path in _private_scope(home, open_only=False):
        try:
            if not path.is_symlink() and path.lstat().st_mode & OTHERS:
                found.append(str(path))
        except OSError:
            continue
    return found


def resolve_home(flag: str | Path | None = None) -> Layout:
    """The data folder asked for, checked to exist and be writable.

    A folder named by the user (flag or environment) must already exist: a typo should not
    silently start a new, empty library. The platform default is created on first use.
    """
    named = flag if flag is not None else os.environ.get(HOME_ENV) or None
    if named is not None and not str(named).strip():
        raise InvalidInput("data folder must not be empty: pass an existing folder with --home")
    if named is not None:
        from .rules import check_text

        check_text(str(named), "data folder", 4096)
    if named is None:
        home = default_home()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        home = Path(named).expanduser()
        if not home.is_dir():
            raise InvalidInput(
                f"data folder {str(home)!r} does not exist: create it or pass an existing "
                "folder with --home / TASKERINO_HOME"
            )
        if home.stat().st_mode & (stat.S_ISVTX | stat.S_IWOTH):
            # /tmp and the like: every account may write there, so nothing in it is private.
            raise InvalidInput(
                f"data folder {str(home)!r} is shared: every account on this machine may "
                f"write in it; make a folder of your own (mkdir -m 700 {home / 'taskerino'}) "
                "and pass that"
            )
    try:
        tempfile.TemporaryFile(dir=home).close()
    except OSError as exc:
        raise InvalidInput(
            f"data folder {str(home)!r} is not writable ({exc.strerror}): "
            "pass a folder you can write to"
        ) from exc
    return Layout(home.resolve())
