"""A picture as every layer passes it around: BGRA, numpy uint8, shape (height, width, 4).

A `Box` says where a picture can differ from the one before it (x, y, width, height in
the picture); None stands for "anywhere". Capture knows it from the server's change
reports, and the encoder converts only that part of a picture to YUV.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]  # x, y, width, height
NO_CHANGE: Box = (0, 0, 0, 0)


def union_box(a: Box | None, b: Box | None) -> Box | None:
    """The box covering both (None, "anywhere", covers everything)."""
    if a is None or b is None:
        return None
    if a[2] <= 0 or a[3] <= 0:
        return b
    if b[2] <= 0 or b[3] <= 0:
        return a
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return x0, y0, x1 - x0, y1 - y0
