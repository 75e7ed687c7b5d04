"""A picture as every layer passes it around: BGRA, numpy uint8, shape (height, width, 4)."""

from __future__ import annotations

import sys
import threading

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]

# References to a pooled buffer while `FramePool.take` looks at it: the pool's list, the
# loop variable and `sys.getrefcount`'s own argument. One more means someone holds it.
_ONLY_THE_POOL = 3


class FramePool:
    """Frame buffers handed out again once nobody holds them any more.

    A fresh 8 MB array a frame, freed a few frames later on another thread, is what made a
    recorder's resident memory climb: the C heap keeps such blocks in the arenas of the
    threads that made them and rarely gives them back (see `taskerino.heap`). A buffer from
    `take` is reused only when the pool holds the last reference to it (CPython counts
    them: a frame waiting in a queue, kept as a source's last picture or seen through a
    numpy view is never handed out again), so a frame given away is never written to
    afterwards. At most `keep` buffers are kept; when all are in use a fresh one is made
    for the caller and freed as usual once dropped. Its pixels are whatever the buffer
    held: the caller writes every one.
    """

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep {keep}; allowed: at least 1")
        self._keep = keep
        self._buffers: list[Frame] = []
        self._lock = threading.Lock()

    def take(self, height: int, width: int) -> Frame:
        shape = (height, width, 4)
        with self._lock:
            stale: list[int] = []
            found: Frame | None = None
            for i in range(len(self._buffers)):
                buffer = self._buffers[i]
                if sys.getrefcount(buffer) == _ONLY_THE_POOL:
                    if buffer.shape == shape:
                        found = buffer
                        break
                    stale.append(i)  # a size no longer asked for (a window was resized)
                del buffer
            for i in reversed(stale):
                del self._buffers[i]
            if found is not None:
                return found
            fresh: Frame = np.empty(shape, np.uint8)
            if len(self._buffers) < self._keep:
                self._buffers.append(fresh)
            return fresh

    def __len__(self) -> int:
        return len(self._buffers)
