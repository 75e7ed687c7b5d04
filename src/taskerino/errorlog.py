"""The log of what nobody expected: tracebacks go to `errors.log` in the data folder.

The CLI and the web app each have one error boundary; both write here, so a user is shown
one line naming this file and never a traceback.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path

ERROR_LOG = "errors.log"
LOG_DIR_ENV = "TASKERINO_LOG_DIR"


def log_unexpected(exc: BaseException, home: str | Path | None, context: str) -> Path:
    """Append the traceback, headed by `context` (the command, the request), to the log in
    `TASKERINO_LOG_DIR`, else the data folder `home`, else the temp folder; return its path."""
    text = "".join(traceback.format_exception(exc))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    candidates = [os.environ.get(LOG_DIR_ENV), home, tempfile.gettempdir()]
    for folder in candidates:
        if not folder:
            continue
        path = Path(folder) / ERROR_LOG
        try:
            with path.open("a", encoding="utf-8", errors="backslashreplace") as log:
                log.write(f"--- {stamp} {context}\n{text}\n")
        except OSError:
            continue
        return path
    return Path(tempfile.gettempdir()) / ERROR_LOG
