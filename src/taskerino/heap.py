"""The C heap of a recording process (spec §10: memory flat over a long recording).

What made a recorder's resident memory climb by steps: glibc serves a block of 128 kB or
more with its own mmap, returned to the system when freed, until the first such block is
freed; from then on (its dynamic threshold) blocks up to that size come from the arena of
the thread that asks, and what is freed in an arena stays resident (only its top end is
ever given back). So every 8 MB picture, 3 MB YUV buffer and, after the first chunk
closes, x264's picture buffers lived in the per-thread arenas, each of which grew to the
largest number of frames ever in flight at once plus the holes between them.

Smaller blocks freed in an arena stay resident too: the audio thread's arena (segment
encoding, the joined audio file, the store) grew by some kilobytes a second, nearly all
of it free.

Capping the arenas at two (so that threads reuse what others freed) was tried and left
out: it lowered the level by some 15 MB, but the two shared arenas grew in steps of a
few MB when a block found no hole, and an hour's growth got worse (+8.6 MiB/hour
against +3.3; bench/results/memory-60min-two-arenas.md).

The pipeline reuses its frame buffers (a display source's spare frames, the compositor's
given-back outputs, the encoder's one YUV picture);
`fix_policy`, set when video recording starts, makes big blocks always the system's own
mappings, so that what a burst or a closed chunk frees goes back at once; `release`,
called every few seconds beside each recording, gives back the free pages inside the
arenas. Elsewhere than glibc these do nothing.

The threshold was 4 MiB at first (the 8 MB frames); the blocks between 128 kB and 4 MiB
(PyAV's 3 MB YUV buffers, x264's planes, OpenCV's conversions) still came from the arenas
and fragmented them: the bytes in use there stepped up by 3 MB at a chunk change and
stayed. At 256 KiB the arenas held about 14 MB in use instead of 20-24, but still grew
by some 2 MB an hour (bench/results/memory-60min.md): glibc's own report (malloc_info,
30 minutes apart) showed the bytes in use flat or falling in every arena while the
heaps of the encoding and capturing threads grew, with the free space inside them:
most likely blocks of 64-256 KiB found no hole big enough. At 64 KiB the floor of an
hour grows +0.91 MB an hour and is flat over its last 30 minutes
(bench/results/memory-60min-mmap-64k.md); the recorder's CPU was 11.7 % of a core
against 10.5 %, under another load.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks from this size up are mmapped, every time: frames beyond the pools (a whole
# grab), x264's planes, PyAV's buffers, packets and fragments; given back whole when
# freed. At 256 KiB the heaps grew by some 2 MB an hour with the bytes in use flat,
# most likely as blocks between 64 and 256 KiB found no hole big enough.
MMAP_THRESHOLD = 64 * 1024
# Free memory at an arena's top kept rather than given back and asked again a frame later.
TRIM_THRESHOLD = 16 * 1024 * 1024


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the process's own C library
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS, Windows)
    return libc


def available() -> bool:
    """True where the C library is glibc (these calls act)."""
    return _call("mallopt") is not None and _call("malloc_trim") is not None


def _call(name: str) -> Callable[..., int] | None:
    libc = _libc()
    return None if libc is None else getattr(libc, name, None)


def fix_policy(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fixed thresholds instead of glibc's moving ones, for the whole process; False where
    there is no glibc. Harmless to call again; best called before the recording's
    threads start, so that no big block was ever served from an arena."""
    mallopt = _call("mallopt")
    if mallopt is None:
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
    if not done:
        log.warning("could not set the C heap's thresholds")
    return done


def release() -> bool:
    """Give the free pages inside every arena back to the system; False where there is
    no glibc or nothing was given back."""
    trim = _call("malloc_trim")
    return bool(trim(0)) if trim is not None else False
