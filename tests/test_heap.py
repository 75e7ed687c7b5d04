"""The C heap's policy in a recording process (taskerino.heap), on glibc."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from taskerino import heap

PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from taskerino import heap

    if sys.argv[1] == "fixed":
        assert heap.fix_policy()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    SIZE = int(sys.argv[2])

    def rss() -> int:
        return int(open("/proc/self/statm").read().split()[1]) * 4096

    def frame() -> int:
        block = libc.malloc(SIZE)
        ctypes.memset(block, 1, SIZE)  # drawn into: resident
        return block

    before = rss()
    libc.free(frame())  # the first one freed (glibc's moving threshold rises past it)
    keep = libc.malloc(64)  # something small that stays
    libc.free(frame())
    print(rss() - before)
    """
)


def kept_after_free(mode: str, size: int) -> int:
    """Bytes still resident after two blocks of `size`, one after the other, were drawn
    into and freed."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(size)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not heap.available(), reason="not glibc")
@pytest.mark.parametrize(
    "size",
    [8 * 1024 * 1024, 1024 * 1024],  # a 1080p BGRA frame; an x264 plane, a partial grab
    ids=["8 MB frame", "1 MB block"],
)
def test_with_the_fixed_policy_a_freed_block_goes_back_to_the_system(size: int) -> None:
    # glibc's own policy keeps the second block's memory once the first was freed...
    assert kept_after_free("default", size) > size // 2
    # ...the fixed one gives it back.
    assert kept_after_free("fixed", size) < size // 8
