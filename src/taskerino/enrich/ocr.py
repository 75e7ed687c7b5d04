"""OCR of screenshots and video key frames with Tesseract (through tesserocr).

`OcrEngine.read` turns one picture into text and word boxes; `key_frames` picks the frames
of a recorded video worth reading. Tesseract is slow (0.6 s for a 1080p screen of three
terminals, 2 s for one full of small text), so the point of `key_frames` is to OCR as few
frames as possible without missing a picture.

One Tesseract instance per thread: a `PyTessBaseAPI` must not be shared between threads,
and the parallelism of enrichment is threads (tesserocr releases the GIL while it works),
so each engine instance is made lazily on first use in a thread. OpenMP threads inside
Tesseract would compete with those threads on a small machine, hence OMP_THREAD_LIMIT=1
while tesserocr loads (see `_tesserocr`).
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

from ..errors import EnrichmentError, InvalidInput
from ..frame import Frame
from . import openmp

Image = npt.NDArray[np.uint8]

# Mean luminance (0-255) under which a picture counts as dark (light text on a dark
# background) and is inverted: Tesseract then reads it in 2.0 s instead of 3.6 s (a 1080p
# screen full of text), as it otherwise tries each line both ways.
DARK_BELOW = 100.0
# Width of the grayscale thumbnails `key_frames` compares.
THUMB_WIDTH = 256
# A thumbnail pixel counts as changed when it moved by more than this many levels.
PIXEL_DELTA = 16


@dataclass(frozen=True)
class Word:
    """A recognised word; its box is in the pixel coordinates of the image read."""

    text: str
    x: int
    y: int
    w: int
    h: int
    conf: float  # Tesseract's confidence, 0-100


@dataclass(frozen=True)
class OcrResult:
    text: str
    words: tuple[Word, ...]


def _tesserocr() -> Any:
    """The tesserocr module, imported with OMP_THREAD_LIMIT=1 in force.

    An OpenMP runtime reads the variable once, when it loads. The PyPI wheel's Tesseract
    has no OpenMP, but one built against a system library may. The variable is put back
    at once, and no other OpenMP runtime loads meanwhile (`openmp`): the one CTranslate2
    (faster-whisper) loads would keep the limit too, and then transcribe garbage when
    asked for more threads than it.
    """
    with openmp.LOADING:
        saved = os.environ.get("OMP_THREAD_LIMIT")
        os.environ["OMP_THREAD_LIMIT"] = "1"
        try:
            import tesserocr
        finally:
            if saved is None:
                del os.environ["OMP_THREAD_LIMIT"]
            else:
                os.environ["OMP_THREAD_LIMIT"] = saved
    return tesserocr


@functools.cache
def find_tessdata(lang: str = "eng") -> str:
    """The tessdata folder holding `<lang>.traineddata` for every language in `lang`.

    Looks at $TESSDATA_PREFIX, then asks the `tesseract` program where its data lives
    (the wheel's own Tesseract has no useful built-in path).
    """
    langs = [part.lstrip("~") for part in lang.split("+") if part]
    if not langs or not all(re.fullmatch(r"[A-Za-z0-9_]+", p) for p in langs):
        raise InvalidInput(f"OCR language {lang!r}; allowed: names like 'eng' or 'eng+deu'")
    candidates = []
    if os.environ.get("TESSDATA_PREFIX"):
        candidates.append(Path(os.environ["TESSDATA_PREFIX"]))
    program = shutil.which("tesseract")
    if program is not None:
        listed = subprocess.run(
            [program, "--list-langs"], capture_output=True, text=True, timeout=30
        ).stdout
        match = re.search(r'"([^"]+)"', listed)
        if match:
            candidates.append(Path(match.group(1)))
    for folder in candidates:
        for path in (folder, folder / "tessdata"):
            if all((path / f"{p}.traineddata").is_file() for p in langs):
                return str(path) + os.sep
    raise EnrichmentError(
        f"no Tesseract language data for {lang!r} (looked in "
        f"{', '.join(str(c) for c in candidates) or 'nothing: no tesseract program'}); "
        "install the Debian packages tesseract-ocr and tesseract-ocr-eng (or set "
        "TESSDATA_PREFIX to a folder with the .traineddata files)",
        lang=lang,
    )


def to_gray(image: Image) -> Image:
    """An 8-bit grayscale copy or view of a BGR, BGRA or grayscale image."""
    if image.dtype != np.uint8:
        raise InvalidInput(f"image of dtype {image.dtype}; allowed: uint8")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY), np.uint8)
    raise InvalidInput(f"image of shape {image.shape}; allowed: (h, w), (h, w, 3) BGR, (h, w, 4)")


class OcrEngine:
    """Tesseract with fixed settings, usable from many threads (one instance each).

    `psm` is Tesseract's page segmentation mode. The default, 6 (one uniform block of
    text), found 99.5 % of the words on screens of terminals side by side where automatic
    layout analysis (3) found 76 % at the same cost: a screen is not a printed page, and
    word search does not need the reading order of columns.

    `close()` ends every thread's instance; call it once the threads are done with it.
    """

    def __init__(
        self,
        lang: str = "eng",
        *,
        tessdata: str | Path | None = None,
        dark_below: float = DARK_BELOW,
        psm: int = 6,
    ) -> None:
        self.lang = lang
        self.psm = psm
        self.tessdata = str(tessdata) + os.sep if tessdata is not None else find_tessdata(lang)
        self.dark_below = dark_below
        self._local = threading.local()
        self._apis: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def _api(self) -> Any:
        if self._closed:
            raise EnrichmentError("the OCR engine is closed")
        api = getattr(self._local, "api", None)
        if api is not None:
            return api
        tesserocr = _tesserocr()
        with self._lock:
            if self._closed:
                raise EnrichmentError("the OCR engine is closed")
            try:
                api = tesserocr.PyTessBaseAPI(path=self.tessdata, lang=self.lang, psm=self.psm)
            except RuntimeError as e:
                raise EnrichmentError(
                    f"Tesseract could not start with language {self.lang!r} "
                    f"and data in {self.tessdata}: {e}"
                ) from e
            self._apis.append(api)
        self._local.api = api
        return api

    def read(self, image: Image) -> OcrResult:
        """Text and word boxes of a BGR, BGRA or grayscale picture (dark ones inverted)."""
        tesserocr = _tesserocr()
        gray = to_gray(image)
        height, width = gray.shape
        if width == 0 or height == 0:
            return OcrResult("", ())
        if float(gray.mean()) < self.dark_below:
            gray = np.asarray(cv2.bitwise_not(gray), np.uint8)
        data = np.ascontiguousarray(gray).tobytes()
        api = self._api()
        # Tesseract keeps a pointer to `data` until recognition is done: it stays alive here.
        api.SetImageBytes(data, width, height, 1, width)
        if not api.Recognize():
            raise EnrichmentError("Tesseract failed to recognise the picture")
        text = api.GetUTF8Text().strip()
        words = []
        iterator = api.GetIterator()
        level = tesserocr.RIL.WORD
        for word in tesserocr.iterate_level(iterator, level):
            try:
                found = word.GetUTF8Text(level).strip()
            except RuntimeError:  # tesserocr's way of saying "no text here"
                continue
            box = word.BoundingBox(level)
            if not found or box is None:
                continue
            x1, y1, x2, y2 = box
            words.append(Word(found, x1, y1, x2 - x1, y2 - y1, float(word.Confidence(level))))
        api.Clear()
        return OcrResult(text, tuple(words))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            apis, self._apis = self._apis, []
        for api in apis:
            api.End()


_default_engines: dict[str, OcrEngine] = {}
_default_lock = threading.Lock()


def ocr_image(image: Image, *, lang: str = "eng") -> OcrResult:
    """Read `image` with a process-wide engine for `lang` (see `OcrEngine.read`)."""
    with _default_lock:
        engine = _default_engines.get(lang)
        if engine is None:
            engine = _default_engines[lang] = OcrEngine(lang)
    return engine.read(image)


# Key frames of a video


def _thumbnail(frame: Any) -> Image:
    """A small grayscale picture of a decoded frame: its luma plane, shrunk."""
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    luma = luma[:, : frame.width]
    height = max(1, round(frame.height * THUMB_WIDTH / frame.width))
    small = cv2.resize(luma, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)
    return np.asarray(small, np.uint8)


def change(a: Image, b: Image) -> float:
    """Share of the thumbnail's pixels (0-1) that differ noticeably between `a` and `b`."""
    diff = cv2.absdiff(a, b)
    return float(np.count_nonzero(diff > PIXEL_DELTA)) / diff.size


class _Picker:
    """Decides, sample by sample, which pictures are worth reading.

    A picture is new when at least `min_change` of it differs from the last one kept.
    A new picture is kept once it has settled (it hardly moved since the sample before),
    or when it has kept changing for `max_gap` seconds: a scrolling burst is read when it
    stops, and a picture that never stops is still read every `max_gap` seconds.
    """

    def __init__(
        self,
        min_change: float,
        max_gap: float,
        on_sample: Callable[[float, float], None] | None,
    ) -> None:
        self.min_change, self.max_gap, self.on_sample = min_change, max_gap, on_sample
        self.kept: Image | None = None  # thumbnail of the last picture kept
        self.previous: Image | None = None  # thumbnail at the sample before
        self.previous_time = 0.0  # when the frame seen at the sample before appeared
        self.changing_since: float | None = None  # when the unread change was first seen

    def keep(self, now: float, thumb: Image, shown_at: float, final: bool = False) -> float | None:
        """The offset to report if the picture on screen at `now` is to be read, else None.

        `shown_at` is when the frame on screen appeared. A settled picture was already on
        screen at the sample before, so it is reported from then: the recorder may have
        re-sent the same picture as a newer frame since.
        """
        moved = 1.0 if self.previous is None else change(self.previous, thumb)
        if self.on_sample is not None:
            self.on_sample(now, moved)
        previous_time, self.previous, self.previous_time = self.previous_time, thumb, shown_at
        if self.kept is not None and change(self.kept, thumb) < self.min_change:
            self.changing_since = None
            return None
        if self.changing_since is None:
            self.changing_since = now
        still = moved < self.min_change / 2
        if self.kept is None or final or still or now - self.changing_since >= self.max_gap:
            self.kept, self.changing_since = thumb, None
            return min(previous_time, shown_at) if still else shown_at
        return None


def key_frames(
    video: str | Path,
    *,
    min_change: float = 0.01,
    max_gap: float = 10.0,
    interval: float = 1.0,
    on_sample: Callable[[float, float], None] | None = None,
) -> Iterator[tuple[float, Image]]:
    """The frames worth OCR-ing: (media offset in seconds, BGR picture), in order.

    The picture on screen is looked at every `interval` seconds of video time, as a small
    grayscale thumbnail, so any picture shown that long is seen. It is yielded when at
    least `min_change` (a share of its pixels, 0-1) differs from the last one yielded and
    it has settled, or has kept changing for `max_gap` seconds (see `_Picker`). The first
    and the last picture count as settled. The offset yielded is when the picture was
    first seen on screen, to within a sample.

    Every frame is decoded but only sampled ones are converted: the recorder's keyframes
    are 30 s of frames apart (longer in time, as it skips unchanged frames), and a P-frame
    needs every frame since the last keyframe, so keyframes alone would miss what was shown
    in between, and seeking saves nothing. Decoding costs ~1.2 ms a 1080p frame, next to
    0.6-2 s to OCR one.

    `on_sample(offset, change)` is called at every sample with the change since the sample
    before: a visual-change signal (for chapters) at no extra cost. A damaged tail (a
    recording cut by a crash) ends the frames instead of failing.
    """
    if not 0 < min_change <= 1:
        raise InvalidInput(f"min_change {min_change}; allowed: above 0, up to 1")
    if not max_gap > 0:
        raise InvalidInput(f"max_gap {max_gap}; allowed: above 0 seconds")
    if not interval > 0:
        raise InvalidInput(f"interval {interval}; allowed: above 0 seconds")
    try:
        container = av.open(str(video))
    except (av.FFmpegError, OSError) as e:
        raise EnrichmentError(f"cannot open video {Path(video).name}: {e}") from e
    with container:
        if not container.streams.video:
            raise EnrichmentError(f"no video stream in {Path(video).name}")
        picker = _Picker(min_change, max_gap, on_sample)
        # Sample k is at first + k * interval. `shown` is the frame on screen, `looks` how
        # many samples have looked at it: after two it has settled and is skipped.
        first: float | None = None
        k = 0
        shown: Any = None
        thumb: Image | None = None
        looks = 0
        for frame in _frames(container, stream=container.streams.video[0]):
            if frame.time is None:
                continue
            t = float(frame.time)
            if first is None:
                first = t
            while shown is not None and first + k * interval < t:
                if looks < 2:
                    thumb = _thumbnail(shown) if thumb is None else thumb
                    looks += 1
                    offset = picker.keep(first + k * interval, thumb, float(shown.time))
                    if offset is not None:
                        yield offset, shown.to_ndarray(format="bgr24")
                    k += 1
                else:
                    # Settled: the samples until this frame see the same picture (a still
                    # screen has no frames in between): no change, nothing to look at.
                    skip_to = max(k + 1, math.ceil((t - first) / interval))
                    if on_sample is not None:
                        for j in range(k, skip_to):
                            on_sample(first + j * interval, 0.0)
                    k = skip_to
            shown, thumb, looks = frame, None, 0
        if shown is not None and first is not None and looks < 2:  # it stays to the end
            thumb = _thumbnail(shown) if thumb is None else thumb
            now = max(float(shown.time), first + k * interval)
            offset = picker.keep(now, thumb, float(shown.time), final=True)
            if offset is not None:
                yield offset, shown.to_ndarray(format="bgr24")


def _frames(container: Any, *, stream: Any) -> Iterator[Any]:
    """Decoded frames, stopping at the first damaged packet."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode()
        except StopIteration:
            return
        except (av.FFmpegError, OSError):
            return
        yield from frames


def frame_at(video: str | Path, offset: float) -> Frame | None:
    """The picture on screen at media offset `offset` (BGRA), or None past the end.

    Seeks to the keyframe before and decodes forward: a fraction of a second of decoding.
    """
    try:
        container = av.open(str(video))
    except (av.FFmpegError, OSError) as e:
        raise EnrichmentError(f"cannot open video {Path(video).name}: {e}") from e
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        assert stream.time_base is not None
        target = max(0.0, offset)
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        found = None
        try:
            for frame in container.decode(stream):
                if frame.time is not None and frame.time > target + 1e-3 and found is not None:
                    break
                found = frame
        except av.FFmpegError:
            pass  # a damaged tail: the last good picture is the answer
        if found is None:
            return None
        picture: Frame = np.asarray(found.to_ndarray(format="bgra"), dtype=np.uint8)
        return picture
