"""Transcription with the real faster-whisper and the tiny.en model shipped on PyPI, on speech
that espeak-ng says at known moments inside noise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from taskerino.enrich.transcribe import (
    AudioTimeline,
    Transcriber,
    TranscriptPiece,
    _garbled,
    packaged_model,
    resolve_model,
)
from taskerino.errors import EnrichmentError, InvalidInput

RATE = 22050  # espeak-ng's own rate: the decoder resamples to Whisper's 16 kHz
FIRST = "The server migration starts on Monday morning."
SECOND = "Open the customer dashboard and check the monthly sales."


@pytest.fixture(scope="module")
def transcriber() -> Iterator[Transcriber]:
    yield Transcriber(cpu_threads=2)


def speech(text: str, folder: Path) -> tuple[np.ndarray, float]:
    """espeak-ng saying `text`, and when the voice starts in it (s)."""
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
    samples, rate = sf.read(str(wav), dtype="float32")
    assert rate == RATE and samples.ndim == 1
    loud = np.flatnonzero(np.abs(samples) > 0.05 * np.abs(samples).max())
    return samples, loud[0] / RATE


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Quiet room noise with a 50 Hz hum."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    return (rng.normal(0, 0.004, t.size) + 0.003 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)


def place(audio: np.ndarray, voice: np.ndarray, at: float) -> None:
    start = round(at * RATE)
    audio[start : start + voice.size] += 0.7 * voice


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def recall(said: str, heard: str) -> float:
    truth = words(said)
    return len(truth & words(heard)) / len(truth)


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float, float]:
    """35 s of noise, FIRST at 5 s and SECOND at 20 s: (file, onset 1, onset 2, end 2)."""
    folder = tmp_path_factory.mktemp("speech")
    first, lead1 = speech(FIRST, folder)
    second, lead2 = speech(SECOND, folder)
    audio = noise(35.0)
    place(audio, first, 5.0)
    place(audio, second, 20.0)
    path = folder / "two.flac"
    sf.write(str(path), audio, RATE)
    return path, 5.0 + lead1, 20.0 + lead2, 20.0 + second.size / RATE


def test_speech_is_found_at_its_moment(
    transcriber: Transcriber, two_sentences: tuple[Path, float, float, float]
) -> None:
    path, onset1, onset2, end2 = two_sentences
    pieces = transcriber.transcribe(path)
    assert pieces, "nothing heard"
    text = " ".join(p.text for p in pieces)
    assert recall(FIRST, text) >= 0.7, text
    assert recall(SECOND, text) >= 0.7, text
    # Times in the file's own seconds, within a second of the truth.
    assert abs(pieces[0].start - onset1) <= 1.0, pieces
    second = next(p for p in pieces if {"customer", "dashboard", "sales"} & words(p.text))
    assert abs(second.start - onset2) <= 1.0, pieces
    assert all(onset1 - 1.0 <= p.start < p.end <= end2 + 1.0 for p in pieces), pieces
    # Nothing but noise between the sentences and after them.
    assert not [p for p in pieces if onset1 + 6.0 < p.start < onset2 - 1.0], pieces
    assert [p.start for p in pieces] == sorted(p.start for p in pieces)


def test_spans_limit_the_work_and_keep_file_time(
    transcriber: Transcriber, two_sentences: tuple[Path, float, float, float]
) -> None:
    path, _, onset2, _ = two_sentences
    only_second = transcriber.transcribe(path, spans=[(15.0, 35.0)])
    text = " ".join(p.text for p in only_second)
    assert recall(SECOND, text) >= 0.7 and recall(FIRST, text) < 0.5, text
    assert abs(only_second[0].start - onset2) <= 1.0, only_second
    assert transcriber.transcribe(path, spans=[(0.0, 4.0), (31.0, 60.0)]) == []
    with pytest.raises(InvalidInput, match="overlaps"):
        transcriber.transcribe(path, spans=[(0.0, 10.0), (5.0, 12.0)])
    with pytest.raises(InvalidInput, match="start < end"):
        transcriber.transcribe(path, spans=[(10.0, 10.0)])


def test_session_audio_maps_to_media_offsets(transcriber: Transcriber, tmp_path: Path) -> None:
    """Four 10 s segments joined, with a 15 s pause between the second and the third."""
    segments = [(0.0, 10.0), (10.0, 10.0), (35.0, 10.0), (45.0, 10.0)]
    voice, lead = speech(FIRST, tmp_path)
    joined = noise(40.0, seed=1)
    place(joined, voice, 22.0)  # in the third segment, 2 s after it starts
    path = tmp_path / "joined.flac"
    sf.write(str(path), joined, RATE)

    pieces = transcriber.transcribe(path)
    timeline = AudioTimeline(segments)
    media = [timeline.piece(p) for p in pieces]
    assert recall(FIRST, " ".join(p.text for p in media)) >= 0.7, media
    assert abs(media[0].start - (37.0 + lead)) <= 1.0, media


def test_audio_timeline() -> None:
    timeline = AudioTimeline([(0.0, 10.0), (10.0, 10.0), (35.0, 0.0), (35.0, 5.0), (52.5, 2.5)])
    assert timeline.duration == 27.5
    assert timeline.to_media(0.0) == 0.0
    assert timeline.to_media(15.0) == 15.0
    assert timeline.to_media(21.0) == 36.0  # after the pause
    # At a seam a start belongs to the later segment, an end to the earlier one.
    assert timeline.to_media(20.0) == 35.0
    assert timeline.to_media(20.0, end=True) == 20.0
    assert timeline.to_media(25.0) == 52.5
    assert timeline.to_media(25.0, end=True) == 40.0
    # Outside the file: clamped.
    assert timeline.to_media(-3.0) == 0.0
    assert timeline.to_media(99.0) == 55.0
    assert timeline.piece(TranscriptPiece(19.0, 21.5, "hi")) == TranscriptPiece(19.0, 36.5, "hi")
    with pytest.raises(InvalidInput, match="duration"):
        AudioTimeline([(0.0, -1.0)])
    with pytest.raises(InvalidInput, match="no audio segments"):
        AudioTimeline([]).to_media(1.0)


def test_model_resolution(tmp_path: Path) -> None:
    packaged = Path(resolve_model(None))
    assert packaged == Path(packaged_model()) == Path(resolve_model(""))
    assert (packaged / "model.bin").is_file() and (packaged / "tokenizer.json").is_file()
    assert resolve_model(str(packaged)) == str(packaged)  # a folder is used as it is
    with pytest.raises(InvalidInput, match="does not exist"):
        resolve_model(str(tmp_path / "missing" / "model"))
    with pytest.raises(InvalidInput, match=r"no model\.bin"):
        resolve_model(str(tmp_path))
    with pytest.raises(InvalidInput, match=r"tiny\.en"):
        resolve_model("tiny-ish")
    # A name goes to the Hub: without the network (or for a model that is not there) the
    # error says what happened and what to do instead.
    with pytest.raises(EnrichmentError, match="could not download the speech model"):
        resolve_model("taskerino-tests/no-such-model")
    with pytest.raises(InvalidInput):
        Transcriber(cpu_threads=0)


def test_unreadable_audio(transcriber: Transcriber, tmp_path: Path) -> None:
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(EnrichmentError, match=r"junk\.flac"):
        transcriber.transcribe(junk)
    silent = tmp_path / "silent.flac"
    sf.write(str(silent), np.zeros(RATE * 5, np.float32), RATE)
    assert transcriber.transcribe(silent) == []


def test_more_threads_than_the_openmp_limit_still_transcribe(
    two_sentences: tuple[Path, float, float, float],
) -> None:
    """OMP_THREAD_LIMIT binds CTranslate2's OpenMP runtime when it loads; asking it for more
    threads than that gave garbage, so the transcriber caps its threads at the limit."""
    path = two_sentences[0]
    script = (
        "import sys\n"
        "from taskerino.enrich.transcribe import Transcriber\n"
        "t = Transcriber(cpu_threads=2)\n"
        "print(t.cpu_threads)\n"
        "print(' '.join(p.text for p in t.transcribe(sys.argv[1])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "1"
    assert recall(FIRST, out[1]) >= 0.7 and recall(SECOND, out[1]) >= 0.7, out


def test_whisper_does_not_load_while_tesseract_sets_the_openmp_limit() -> None:
    """OCR imports Tesseract with OMP_THREAD_LIMIT=1 for a moment; a worker's transcribing
    thread that loaded faster-whisper in that moment gave CTranslate2's OpenMP runtime the
    limit for good, unseen by the transcriber's cap: two threads, garbage. It waits."""
    script = (
        "import ctypes, os, sys, threading, time\n"
        "from pathlib import Path\n"
        "from taskerino.enrich import openmp\n"
        "with openmp.LOADING:  # as the OCR stage holds it while importing tesserocr\n"
        "    os.environ['OMP_THREAD_LIMIT'] = '1'\n"
        "    loader = threading.Thread(target=openmp.faster_whisper)\n"
        "    loader.start()\n"
        "    time.sleep(0.5)\n"
        "    print('ctranslate2' in sys.modules)\n"
        "    del os.environ['OMP_THREAD_LIMIT']\n"
        "loader.join()\n"
        "import ctranslate2\n"
        "libs = Path(ctranslate2.__file__).parent.parent / 'ctranslate2.libs'\n"
        "gomp = sorted(libs.glob('libgomp*'))\n"
        "print(ctypes.CDLL(str(gomp[0])).omp_get_thread_limit() if gomp else 'none')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    loaded_meanwhile, limit = result.stdout.split()
    assert loaded_meanwhile == "False"
    if limit == "none":
        pytest.skip("this CTranslate2 build has no OpenMP runtime of its own to ask")
    assert int(limit) > 1, result.stdout


def test_a_garbled_pass_is_decoded_again_and_never_stored(
    transcriber: Transcriber,
    two_sentences: tuple[Path, float, float, float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The model's numeric failure ("!!!!" at a log-probability of minus hundreds) cannot be
    # provoked on demand, so the first pass is replaced by such output; the second pass is
    # the real model on the real audio.
    path = two_sentences[0]
    real = transcriber._model.transcribe
    calls: list[int] = []

    def first_pass_garbled(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            bad = SimpleNamespace(
                start=0.0, end=5.0, text=" !!!!!!!!!!!!", avg_logprob=-291.0, compression_ratio=18.7
            )
            return [bad], None
        return real(*args, **kwargs)

    monkeypatch.setattr(transcriber._model, "transcribe", first_pass_garbled)
    pieces = transcriber.transcribe(path)
    assert len(calls) == 2
    assert pieces and all(any(c.isalpha() for c in p.text) for p in pieces)

    # Garbled both times: dropped, not stored as a line of punctuation.
    calls.clear()
    monkeypatch.setattr(
        transcriber._model,
        "transcribe",
        lambda *a, **k: (
            [
                SimpleNamespace(
                    start=0.0, end=2.0, text=" !!!", avg_logprob=-0.5, compression_ratio=1.0
                )
            ],
            None,
        ),
    )
    assert transcriber.transcribe(path) == []


def test_garbled_means_no_word_or_both_whisper_bounds_broken() -> None:
    def seg(text: str, logprob: float = -0.3, ratio: float = 1.2) -> SimpleNamespace:
        return SimpleNamespace(text=text, avg_logprob=logprob, compression_ratio=ratio)

    assert not _garbled(seg(" Retry the invoice queue."))
    assert not _garbled(seg(" 4411"))
    assert not _garbled(seg(" la la la la la la", ratio=3.0))  # repetitive but confident
    assert not _garbled(seg(" mumbled", logprob=-1.5))  # unsure but not repeating
    assert _garbled(seg(" !!!!!!!!"))
    assert _garbled(seg(" ..."))
    assert _garbled(seg(" the the the the the", logprob=-1.6, ratio=2.9))
    assert _garbled(seg(" hello", logprob=float("nan")))
