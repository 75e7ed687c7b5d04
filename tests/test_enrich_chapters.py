"""Chapters from synthetic session timelines: boundaries, titles, limits, determinism."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskerino.enrich.chapters import (
    Activity,
    ChapterDraft,
    ChapterMaterial,
    ChapterParams,
    ChapterText,
    TextAt,
    TfidfSummariser,
    draft_chapters,
)
from taskerino.enrich.transcribe import TranscriptPiece
from taskerino.errors import InvalidInput

BUILD = "compiler warning linker error makefile target object symbol"
BILLING = "invoice customer refund payment receipt balance billing"


def screens(start: float, end: float, vocabulary: str, every: float = 10.0) -> list[TextAt]:
    """OCR texts every `every` seconds, each a rotating selection of the vocabulary."""
    words = vocabulary.split()
    texts = []
    t, n = start, 0
    while t < end:
        picked = [words[(n + k) % len(words)] for k in range(5)]
        texts.append(TextAt(t, " ".join(picked) + f" line {n}"))
        t += every
        n += 1
    return texts


def window_switch_session() -> dict[str, object]:
    """20 minutes: a terminal building code, then from 600 s a browser on invoices."""
    return {
        "duration": 1200.0,
        "activity": [
            Activity(0.0, "XTerm", "make build"),
            Activity(600.0, "Firefox", "Invoices — Mozilla Firefox"),
        ],
        "visual": [(float(t), 0.9 if t == 600 else 0.02) for t in range(0, 1200, 2)],
        "ocr": screens(0, 600, BUILD) + screens(600, 1200, BILLING),
        "transcript": [
            TranscriptPiece(100.0, 104.0, "the linker fails on a missing symbol"),
            TranscriptPiece(700.0, 704.0, "this customer wants a refund for the invoice"),
        ],
    }


def chapters(**kwargs: object) -> list[ChapterDraft]:
    return draft_chapters(**kwargs)  # type: ignore[arg-type]


def test_window_switch_makes_a_boundary_named_after_the_new_window() -> None:
    result = chapters(**window_switch_session())
    assert len(result) == 2, result
    first, second = result
    assert (first.start_offset, first.end_offset) == (0.0, 600.0)
    assert (second.start_offset, second.end_offset) == (600.0, 1200.0)
    assert "Invoices" in second.title and "Firefox" in second.title
    assert "make build" in first.title
    assert {"invoice", "refund", "customer"} & set(second.key_topics), second.key_topics
    assert {"linker", "compiler", "symbol"} & set(first.key_topics), first.key_topics
    assert not set(first.key_topics) & {"invoice", "refund"}
    for chapter in result:
        assert chapter.start_offset <= chapter.thumbnail_offset < chapter.end_offset
        assert 0.0 <= chapter.confidence <= 1.0
        assert chapter.summary.endswith(".") and "\n" not in chapter.summary
    assert "10 min" in second.summary and "Invoices" in second.summary
    assert "refund" in second.summary  # what was said


def test_a_boundary_lands_near_a_switch_between_two_windows_of_one_application() -> None:
    session = window_switch_session()
    session["activity"] = [Activity(0.0, "XTerm", "build"), Activity(437.0, "XTerm", "notes")]
    session["visual"] = []
    session["ocr"] = []
    session["transcript"] = []
    result = chapters(**session)
    assert [c.start_offset for c in result] == [0.0, 437.0]
    assert result[1].title.startswith("XTerm: notes")


def test_text_and_picture_alone_can_make_a_boundary() -> None:
    """No activity track (e.g. no X): vocabulary shift plus a visual jump at 300 s."""
    result = chapters(
        duration=600.0,
        visual=[(float(t), 0.8 if t == 300 else 0.01) for t in range(600)],
        ocr=screens(0, 300, BUILD, every=5) + screens(300, 600, BILLING, every=5),
    )
    assert len(result) == 2
    assert abs(result[1].start_offset - 300.0) <= 3.0
    title = set(result[1].title.lower().replace(",", "").split())
    assert title <= set(BILLING.split()) and len(title) == 3, title
    # Weaker evidence than a window switch: lower confidence.
    switch = chapters(**window_switch_session())
    assert result[1].confidence < switch[1].confidence


def test_short_detours_do_not_split_and_min_length_holds() -> None:
    activity = [Activity(0.0, "Code", "main.py")]
    for start in range(100, 1100, 200):  # 15 s glances at a chat window every 200 s
        activity += [Activity(start, "Slack", "general"), Activity(start + 15, "Code", "main.py")]
    result = chapters(duration=1200.0, activity=activity)
    assert len(result) == 1
    assert result[0].title.startswith("Code: main.py")

    # Switching for real every 40 s: chapters, but none shorter than min_length.
    # One application after another, 100 s each: chapters, none shorter than min_length.
    apps = [Activity(float(t), f"App{t}", "w") for t in range(0, 1200, 100)]
    result = chapters(duration=1200.0, activity=apps, params=ChapterParams(min_length=150.0))
    assert len(result) >= 4
    assert all(c.end_offset - c.start_offset >= 150.0 for c in result)
    assert all(c.start_offset % 100 == 0 for c in result)  # each on a switch
    # Cycling through three applications every 15 s is one activity, not many.
    cycling = [Activity(float(t), f"App{t // 15 % 3}", "w") for t in range(0, 1200, 15)]
    assert len(chapters(duration=1200.0, activity=cycling)) == 1


def test_max_length_splits_long_chapters() -> None:
    session = window_switch_session()
    session["params"] = ChapterParams(min_length=60.0, max_length=400.0)
    result = chapters(**session)
    assert all(c.end_offset - c.start_offset <= 400.0 for c in result), result
    assert 600.0 in [c.start_offset for c in result]


@settings(max_examples=40, deadline=None)
@given(
    duration=st.floats(0.0, 4000.0),
    switches=st.lists(
        st.tuples(st.floats(-10.0, 4100.0), st.sampled_from(["A", "B", "C"])), max_size=30
    ),
    min_length=st.floats(10.0, 600.0),
)
def test_chapters_tile_the_session_and_respect_min_length(
    duration: float, switches: list[tuple[float, str]], min_length: float
) -> None:
    activity = [Activity(t, app, f"{app} window") for t, app in switches]
    result = chapters(
        duration=duration, activity=activity, params=ChapterParams(min_length=min_length)
    )
    if duration == 0:
        assert result == []
        return
    assert result[0].start_offset == 0.0
    assert result[-1].end_offset == pytest.approx(duration, abs=1e-3)
    for a, b in itertools.pairwise(result):
        assert a.end_offset == b.start_offset
    if duration >= 2 * min_length:
        assert all(c.end_offset - c.start_offset >= min_length - 1e-3 for c in result)
    else:
        assert len(result) == 1


def test_same_input_same_output() -> None:
    session = window_switch_session()
    once = chapters(**session)
    again = chapters(**window_switch_session())
    assert once == again
    # Order of the input lists does not matter either.
    shuffled = dict(session)
    for key in ("activity", "visual", "ocr", "transcript"):
        items = list(session[key])  # type: ignore[call-overload]
        random.Random(7).shuffle(items)
        shuffled[key] = items
    assert chapters(**shuffled) == once


def test_thumbnail_shows_the_dominant_window() -> None:
    activity = [
        Activity(0.0, "XTerm", "build"),
        Activity(30.0, "Firefox", "Docs"),  # a detour at the start of the chapter
        Activity(50.0, "XTerm", "build"),
    ]
    ocr = [TextAt(35.0, "firefox documentation page"), *screens(60, 300, BUILD, every=20)]
    [chapter] = chapters(duration=300.0, activity=activity, ocr=ocr)
    assert chapter.thumbnail_offset >= 60.0
    assert chapter.thumbnail_offset in {t.offset for t in ocr}
    # Without any text: the middle of the dominant window's longest stretch.
    [bare] = chapters(duration=300.0, activity=activity)
    assert bare.thumbnail_offset == 175.0
    [nothing] = chapters(duration=300.0)
    assert nothing.thumbnail_offset == 150.0
    assert nothing.title == "Chapter 1"


class Shouting:
    """A summariser of our own: the interface a language model would implement."""

    def __init__(self) -> None:
        self.seen: list[ChapterMaterial] = []

    def describe(self, chapters: Sequence[ChapterMaterial]) -> list[ChapterText]:
        self.seen = list(chapters)
        return [
            ChapterText(c.windows[0][1].upper(), f"{len(c.seen)} screens", ("x",)) for c in chapters
        ]


def test_summariser_can_be_replaced() -> None:
    summariser = Shouting()
    session = window_switch_session()
    result = draft_chapters(**session, summariser=summariser)  # type: ignore[arg-type]
    assert [c.title for c in result] == ["MAKE BUILD", "INVOICES — MOZILLA FIREFOX"]
    assert result[1].summary == "60 screens"
    first, second = summariser.seen
    assert first.windows == (("XTerm", "make build", 600.0),)
    assert second.said == ("this customer wants a refund for the invoice",)
    assert (second.start_offset, second.end_offset) == (600.0, 1200.0)

    class Broken:
        def describe(self, chapters: Sequence[ChapterMaterial]) -> list[ChapterText]:
            return []

    with pytest.raises(InvalidInput, match="summariser"):
        draft_chapters(**session, summariser=Broken())  # type: ignore[arg-type]


def test_default_summariser_on_its_own() -> None:
    material = ChapterMaterial(
        index=0,
        start_offset=0.0,
        end_offset=90.0,
        windows=(("Code", "billing.py — Code", 80.0), ("XTerm", "tests", 10.0)),
        seen=("def refund_invoice(invoice): payment gateway", "refund invoice payment"),
        said=("we refund the invoice through the payment gateway",),
    )
    [text] = TfidfSummariser(topics=3).describe([material])
    assert text.title.startswith("billing.py — Code · ")
    assert len(text.key_topics) == 3
    assert "refund" in " ".join(text.key_topics) or "invoice" in " ".join(text.key_topics)
    assert text.summary.startswith("1.5 min mostly in billing.py — Code, also XTerm; about ")


def test_bad_input() -> None:
    with pytest.raises(InvalidInput, match="duration"):
        draft_chapters(-1.0)
    with pytest.raises(InvalidInput, match="min_length"):
        draft_chapters(100.0, params=ChapterParams(min_length=0.0))
    with pytest.raises(InvalidInput, match="max_length"):
        draft_chapters(100.0, params=ChapterParams(min_length=60.0, max_length=90.0))
    with pytest.raises(InvalidInput, match="step"):
        draft_chapters(100.0, params=ChapterParams(step=0.0))
