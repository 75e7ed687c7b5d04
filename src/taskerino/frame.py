"""A picture as every layer passes it around: BGRA, numpy uint8, shape (height, width, 4)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
