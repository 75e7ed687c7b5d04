"""Reading the pixels of any X drawable (a window's off-screen pixmap) over XCB, in C.

python-xlib parses a 1280x720 image in ~20 ms holding the GIL; XCB's GetImage takes
~2.5 ms, and MIT-SHM (the server writes into memory shared with us: nothing goes through
the socket) well under one. mss does this for the root window only, so this is the same
with any drawable, built on mss's XCB bindings.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from mss.linux import xcb
from mss.linux.xcbgen import (
    Drawable,
    ImageFormat,
    ShmSeg,
    get_image,
    get_image_data,
    shm_attach_fd,
    shm_detach,
    shm_get_image,
)
from mss.linux.xcbhelpers import LIB
from mss.linux.xcbhelpers import XError as XcbError

from ..errors import CaptureError
from ..frame import Frame

__all__ = ["DrawableReader", "XcbError"]

ALL_PLANES = 0xFFFFFFFF


class DrawableReader:
    """ZPixmap pixels (4 bytes each) of drawables on one XCB connection of its own; not
    thread-safe (its owner holds a lock)."""

    def __init__(self, display_name: str, shared_memory: bool = True) -> None:
        try:
            self._conn: Any = xcb.connect(display_name)[0]
        except XcbError as e:
            raise CaptureError(f"cannot connect to X display {display_name}: {e}") from e
        self._shm = shared_memory and bool(xcb.get_extension_data(self._conn, LIB.shm_id).present)
        self._shm_worked = False
        self._buffer: mmap.mmap | None = None
        self._segment: ShmSeg | None = None

    def read(
        self,
        drawable: int,
        x: int,
        y: int,
        width: int,
        height: int,
        then: Callable[[Frame], Frame] | None = None,
    ) -> Frame:
        """The pixels of a rectangle of `drawable`, height x width x 4; XcbError when the
        server refuses (the drawable is gone or smaller than asked). With `then`, what it
        makes of them (a smaller picture), given a view that is valid only during the call:
        the pixels are not copied first."""
        pixels = self._view(drawable, x, y, width, height)
        return pixels.copy() if then is None else then(pixels)

    def read_into(self, drawable: int, x: int, y: int, out: Frame, shrink: int = 1) -> None:
        """Write the rectangle of `drawable` at (`x`, `y`), of `out`'s size, into `out`
        (height x width x 4 bytes; a view into a larger frame will do). Through shared
        memory nothing is allocated per read: the server writes into the segment kept
        here, and its pixels are copied straight to `out`.

        With `shrink` k > 1 the rectangle is k times `out`'s size on each side, and each
        pixel of `out` is the rounded mean of its k x k block (what the compositor's
        INTER_AREA gives): scaled straight out of the segment, the whole picture is never
        copied."""
        pixels = self._view(drawable, x, y, out.shape[1] * shrink, out.shape[0] * shrink)
        if shrink == 1:
            np.copyto(out, pixels)
        else:
            size = (out.shape[1], out.shape[0])
            cv2.resize(pixels, size, dst=out, interpolation=cv2.INTER_AREA)

    def _view(self, drawable: int, x: int, y: int, width: int, height: int) -> Frame:
        """The rectangle's pixels, as a view of the shared segment (it can be replaced or
        closed once the view is gone: callers drop it at once) or of the reply's bytes."""
        size = width * height * 4
        if self._shm:
            try:
                shared = self._read_shared(drawable, x, y, width, height, size)
            except (XcbError, OSError) as exc:
                if self._shm_worked and isinstance(exc, XcbError):
                    raise  # shared memory works: the request itself was wrong
                # It never worked here (a remote server), or memory ran short.
                self._shm = False
                self._release()
            else:
                return np.frombuffer(shared, np.uint8, size).reshape(height, width, 4)
        reply = get_image(
            self._conn, ImageFormat.ZPixmap, Drawable(drawable), x, y, width, height, ALL_PLANES
        )
        data = get_image_data(reply)
        if len(data) != size:
            raise CaptureError("only windows of 24 or 32 bits a pixel can be captured")
        return np.frombuffer(memoryview(data), np.uint8).reshape(height, width, 4)

    def _read_shared(
        self, drawable: int, x: int, y: int, width: int, height: int, size: int
    ) -> mmap.mmap:
        """Have the server write the rectangle into the shared segment; that segment."""
        if self._buffer is None or len(self._buffer) < size:
            self._attach(size)
        assert self._buffer is not None and self._segment is not None
        reply = shm_get_image(
            self._conn,
            Drawable(drawable),
            x,
            y,
            width,
            height,
            ALL_PLANES,
            ImageFormat.ZPixmap,
            self._segment,
            0,
        )
        if reply.size != size:
            raise CaptureError("only windows of 24 or 32 bits a pixel can be captured")
        self._shm_worked = True
        return self._buffer

    def _attach(self, size: int) -> None:
        """A shared segment of `size` bytes in place of the one before (a window grew)."""
        self._release()
        fd = os.memfd_create("taskerino-window", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            buffer = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except OSError:
            os.close(fd)
            raise
        segment = ShmSeg(xcb.generate_id(self._conn).value)
        try:
            shm_attach_fd(self._conn, segment, fd, 0)  # XCB closes the fd, also on failure
        except XcbError:
            buffer.close()
            raise
        self._buffer, self._segment = buffer, segment

    def _release(self) -> None:
        if self._segment is not None:
            # A failure means the connection is going: the server drops the segment then.
            with contextlib.suppress(XcbError):
                shm_detach(self._conn, self._segment)
            self._segment = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    @property
    def shared_memory(self) -> bool:
        """True while reads go through shared memory."""
        return self._shm

    def close(self) -> None:
        if self._conn is not None:
            self._release()
            xcb.disconnect(self._conn)
            self._conn = None
