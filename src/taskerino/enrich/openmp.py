"""Loading the libraries that bring an OpenMP runtime, one at a time.

An OpenMP runtime reads OMP_THREAD_LIMIT once, as it loads. Tesseract is imported with the
limit set to 1 (`ocr`); CTranslate2 (faster-whisper) loads a runtime of its own. Loaded
in another thread while that limit was set (a worker runs OCR and transcription side by
side), it kept the limit, and then transcribed garbage when asked for more threads than
it (a clear sentence placed 13 s early, "You're going to be in the next one" repeated in
the noise after it). So both load under this lock.
"""

from __future__ import annotations

import threading
from typing import Any

LOADING = threading.Lock()


def faster_whisper() -> Any:
    """The faster_whisper package, loaded while no other thread changes OMP_THREAD_LIMIT."""
    with LOADING:
        import faster_whisper

    return faster_whisper
