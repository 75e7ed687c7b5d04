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


def cell_part(box: Box, size: tuple[int, int], cell: Box) -> tuple[Box, Box] | None:
    """The part of `cell` (output pixels) that shows the source's `box`, and the part of
    the source frame (of `size`) drawn into it; None when the cell does not map whole
    source pixels to whole output pixels (drawing a part there would not match drawing
    it all). A 2x2 block of a halved source is averaged alone, so a part of it starting
    on an even pixel scales to exactly what it is in the whole cell.
    """
    (fw, fh), (x, y, w, h) = size, cell
    if fw % w or fh % h:
        return None  # an upscale, or a ratio that is not a whole number
    kx, ky = fw // w, fh // h
    bx0, by0 = max(0, box[0]), max(0, box[1])
    bx1, by1 = min(fw, box[0] + box[2]), min(fh, box[1] + box[3])
    if bx1 <= bx0 or by1 <= by0:
        return (x, y, 0, 0), (0, 0, 0, 0)
    sx0, sy0 = bx0 // kx * kx, by0 // ky * ky  # out to the edges of whole blocks
    sx1, sy1 = -(-bx1 // kx) * kx, -(-by1 // ky) * ky
    part = (x + sx0 // kx, y + sy0 // ky, (sx1 - sx0) // kx, (sy1 - sy0) // ky)
    return part, (sx0, sy0, sx1 - sx0, sy1 - sy0)
