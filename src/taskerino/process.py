"""Who owns a live session or an in-flight blob write, and whether that owner still lives.

A pid alone can be reused after a crash, so an owner is (host, pid, start token): the
kernel's start time of the process. A zombie counts as dead.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path


def _start_token(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


# A process on another machine is presumed dead after this long without a heartbeat.
HEARTBEAT_STALE = 30.0


@dataclass(frozen=True)
class ProcessOwner:
    host: str
    pid: int
    token: str

    def is_alive(self, heartbeat: float | None = None, now: float | None = None) -> bool:
        """The one answer to "is this owner still alive": on this host its pid and start
        token; on another host its heartbeat (unix time), fresh within HEARTBEAT_STALE.
        An owner on another host that sends no heartbeat (a blob write) is presumed alive.
        """
        if self.host != socket.gethostname():
            if heartbeat is None:
                return True
            return (time.time() if now is None else now) - heartbeat < HEARTBEAT_STALE
        if Path("/proc").is_dir():
            return _start_token(self.pid) == self.token
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def encode(self) -> str:
        return f"{self.host}|{self.pid}|{self.token}"

    @classmethod
    def decode(cls, text: object) -> ProcessOwner:
        """The owner `encode` wrote; ValueError for anything else (a damaged row)."""
        if not isinstance(text, str):
            raise ValueError(f"a process owner is text, not {type(text).__name__}")
        host, pid, token = text.rsplit("|", 2)
        return cls(host, int(pid), token)


@cache
def _me(pid: int) -> ProcessOwner:
    return ProcessOwner(socket.gethostname(), pid, _start_token(pid) or "0")


def current_owner() -> ProcessOwner:
    """This process as an owner (recomputed after a fork)."""
    return _me(os.getpid())
