"""Test-only: `taskerino` whose `test:` pictures stall now and then, so that a recording
really drops frames.

One grab in `EVERY` takes 2.5 frame periods: the capture loop then misses one tick, which
it counts as dropped, so the drop rate settles near 1/EVERY (2.5 %: the "warning" band of
§1). Run as a script with the arguments of `taskerino` (they must include `--fps`); this
file is part of the tests only, nothing of it is reachable from the CLI or the API.
"""

from __future__ import annotations

import itertools
import sys
import time

from taskerino import cli
from taskerino.capture.synthetic import TestPatternSource

EVERY = 40
STALL_PERIODS = 2.5


def stall_every(fps: int) -> None:
    grab = TestPatternSource.grab
    count = itertools.count(1)

    def stalling_grab(self: TestPatternSource) -> object:
        if next(count) % EVERY == 0:
            time.sleep(STALL_PERIODS / fps)
        return grab(self)

    TestPatternSource.grab = stalling_grab  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    args = sys.argv[1:]
    stall_every(int(args[args.index("--fps") + 1]))
    sys.argv = ["taskerino", *args]
    cli.run()
