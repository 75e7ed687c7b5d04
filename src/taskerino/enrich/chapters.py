"""Chapters of a session from what it recorded, offline and deterministic.

Boundaries are voted on a time grid. At each candidate moment `t` the stretch before it,
[t - window, t), is compared with the stretch after it, [t, t + window):
- activity: how different the share of time per application and per window is (a full
  switch of application scores 1; of window within one application 0.8) — the strongest
  signal, so a switch alone makes a boundary, and a detour shorter than the window does
  not;
- visual change: how far the picture's change at `t` stands above its usual change around;
- OCR and transcript vocabulary: how different the words seen or said before and after are.
A moment is a candidate where the weighted sum peaks (nothing higher within min_length / 2:
the slopes around a switch score high too) and reaches `threshold`; the strongest win, each
at least `min_length` from the others and from both ends. Activity changes are candidates
at their exact offsets, so a boundary caused by a switch lands on it. With `max_length`,
a longer chapter is split at its strongest moment.

Titles, summaries and key topics come from a `Summariser`; the default ranks phrases by
TF-IDF across the session's chapters (scikit-learn, no model to download). A language-model
summariser can replace it behind the same interface.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from ..errors import InvalidInput
from .transcribe import TranscriptPiece

K = TypeVar("K", bound=Hashable)

# Texts needed on each side of a moment for a vocabulary shift to count in full.
TEXT_EVIDENCE = 3

# Words of three letters or more: OCR noise, numbers and ids do not make topics.
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"


@dataclass(frozen=True)
class Activity:
    """From `offset` on, the focused window was `title` of application `app`."""

    offset: float
    app: str
    title: str


@dataclass(frozen=True, order=True)
class TextAt:
    """Text seen (OCR) at a media offset."""

    offset: float
    text: str


@dataclass(frozen=True)
class ChapterDraft:
    start_offset: float
    end_offset: float
    title: str
    summary: str
    key_topics: tuple[str, ...]
    confidence: float  # 0-1
    thumbnail_offset: float  # a representative moment


@dataclass(frozen=True)
class ChapterParams:
    min_length: float = 60.0  # seconds; no chapter is shorter unless the session is
    max_length: float | None = None  # longer chapters are split at their best moment
    window: float | None = None  # seconds compared on each side; default min_length
    step: float | None = None  # grid spacing; default min_length / 20, at least 1 s
    threshold: float = 0.5
    activity_weight: float = 1.0
    visual_weight: float = 0.3
    ocr_weight: float = 0.4
    transcript_weight: float = 0.4
    topics: int = 5  # key topics per chapter

    def check(self) -> None:
        numbers = {k: v for k, v in vars(self).items() if isinstance(v, int | float)}
        if any(not math.isfinite(v) or v < 0 for v in numbers.values()):
            raise InvalidInput(f"chapter parameters {numbers}; allowed: finite, 0 or more")
        if self.min_length <= 0:
            raise InvalidInput(f"min_length {self.min_length}; allowed: above 0 seconds")
        if self.max_length is not None and self.max_length < 2 * self.min_length:
            raise InvalidInput(
                f"max_length {self.max_length}; allowed: at least twice min_length "
                f"({2 * self.min_length})"
            )
        for name in ("window", "step"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InvalidInput(f"{name} {value}; allowed: above 0 seconds")


@dataclass(frozen=True)
class ChapterMaterial:
    """What a summariser gets for one chapter."""

    index: int
    start_offset: float
    end_offset: float
    # (app, title, seconds focused), longest first
    windows: tuple[tuple[str, str, float], ...]
    seen: tuple[str, ...]  # OCR texts, in time order, repeats dropped
    said: tuple[str, ...]  # transcript texts, in time order


@dataclass(frozen=True)
class ChapterText:
    title: str
    summary: str
    key_topics: tuple[str, ...] = field(default_factory=tuple)


class Summariser(Protocol):
    """Titles, one-line summaries and key topics for a session's chapters.

    `describe` gets every chapter of the session at once (so that a phrase can be judged
    against the other chapters) and returns one `ChapterText` per chapter, in order.
    """

    def describe(self, chapters: Sequence[ChapterMaterial]) -> list[ChapterText]: ...


# --- signals -------------------------------------------------------------------------------


def _analyzer() -> Callable[[str], list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(  # type: ignore[no-any-return]
        token_pattern=TOKEN_PATTERN, stop_words="english", lowercase=True
    ).build_analyzer()


@dataclass(frozen=True)
class _Stretch:
    start: float
    end: float
    app: str
    title: str


def _stretches(activity: Sequence[Activity], duration: float) -> list[_Stretch]:
    """Focus intervals: each event lasts until the next one (or the end)."""
    events = sorted((min(max(a.offset, 0.0), duration), i, a) for i, a in enumerate(activity))
    result = []
    for k, (start, _, a) in enumerate(events):
        end = events[k + 1][0] if k + 1 < len(events) else duration
        if end > start:
            result.append(_Stretch(start, end, a.app, a.title))
    return result


class _ActivitySignal:
    def __init__(self, stretches: list[_Stretch]) -> None:
        self.stretches = stretches
        self.starts = [s.start for s in stretches]

    def shares(
        self, a: float, b: float
    ) -> tuple[dict[str, float], dict[tuple[str, str], float], float]:
        apps: dict[str, float] = defaultdict(float)
        windows: dict[tuple[str, str], float] = defaultdict(float)
        covered = 0.0
        i = max(0, bisect.bisect_right(self.starts, a) - 1)
        while i < len(self.stretches) and self.stretches[i].start < b:
            s = self.stretches[i]
            overlap = min(b, s.end) - max(a, s.start)
            if overlap > 0:
                apps[s.app] += overlap
                windows[(s.app, s.title)] += overlap
                covered += overlap
            i += 1
        return apps, windows, covered

    def score(self, t: float, window: float) -> float:
        apps_l, win_l, cov_l = self.shares(t - window, t)
        apps_r, win_r, cov_r = self.shares(t, t + window)
        # A side that is mostly unknown (before the first event) says nothing.
        if cov_l < 0.25 * window or cov_r < 0.25 * window:
            return 0.0
        return max(_distance(apps_l, apps_r), 0.8 * _distance(win_l, win_r))


def _distance(left: dict[K, float], right: dict[K, float]) -> float:
    """Total variation distance between two time-share distributions (0 same, 1 disjoint)."""
    total_l, total_r = sum(left.values()), sum(right.values())
    keys = set(left) | set(right)
    return 0.5 * sum(abs(left.get(k, 0.0) / total_l - right.get(k, 0.0) / total_r) for k in keys)


class _TextSignal:
    """Vocabulary shift: documents are sets of words at offsets."""

    def __init__(self, items: list[tuple[float, frozenset[str]]]) -> None:
        self.items = sorted(items, key=lambda item: (item[0], sorted(item[1])))
        self.offsets = [offset for offset, _ in self.items]

    def _profile(self, a: float, b: float) -> tuple[Counter[str], int]:
        """In how many documents of [a, b) each word occurs, and how many there are."""
        lo, hi = bisect.bisect_left(self.offsets, a), bisect.bisect_left(self.offsets, b)
        profile: Counter[str] = Counter()
        for _, words in self.items[lo:hi]:
            profile.update(words)
        return profile, hi - lo

    def score(self, t: float, window: float) -> float:
        left, n_left = self._profile(t - window, t)
        right, n_right = self._profile(t, t + window)
        if not left or not right:
            return 0.0
        dot = sum(left[w] * right[w] for w in left.keys() & right.keys())
        norm = math.sqrt(sum(v * v for v in left.values()) * sum(v * v for v in right.values()))
        # One screen or sentence on a side is thin evidence of a shift.
        evidence = min(1.0, min(n_left, n_right) / TEXT_EVIDENCE)
        return (1.0 - dot / norm) * evidence


class _VisualSignal:
    def __init__(self, visual: Sequence[tuple[float, float]]) -> None:
        pairs = sorted((float(t), min(max(float(s), 0.0), 1.0)) for t, s in visual)
        self.offsets = [t for t, _ in pairs]
        self.scores = [s for _, s in pairs]
        self.sums = np.concatenate([[0.0], np.cumsum(self.scores)])

    def score(self, t: float, half_cell: float, window: float) -> float:
        lo, hi = (
            bisect.bisect_left(self.offsets, t - half_cell),
            bisect.bisect_left(self.offsets, t + half_cell),
        )
        if lo == hi:
            return 0.0
        peak = max(self.scores[lo:hi])
        a, b = (
            bisect.bisect_left(self.offsets, t - window),
            bisect.bisect_left(self.offsets, t + window),
        )
        usual = float(self.sums[b] - self.sums[a]) / (b - a)
        return min(max(peak - usual, 0.0), 1.0)


# --- chapters ------------------------------------------------------------------------------


def draft_chapters(
    duration: float,
    *,
    activity: Sequence[Activity] = (),
    visual: Sequence[tuple[float, float]] = (),
    ocr: Sequence[TextAt] = (),
    transcript: Sequence[TranscriptPiece] = (),
    params: ChapterParams | None = None,
    summariser: Summariser | None = None,
) -> list[ChapterDraft]:
    """Chapters covering [0, duration] of a session's media timeline.

    `activity`: focus changes; `visual`: (offset, change 0-1) samples such as
    `ocr.key_frames` reports; `ocr`: text seen at offsets; `transcript`: pieces with media
    offsets. All offsets are media offsets in seconds. Same input, same output.
    """
    params = params or ChapterParams()
    params.check()
    if not math.isfinite(duration) or duration < 0:
        raise InvalidInput(f"duration {duration}; allowed: 0 or more seconds")
    if duration == 0:
        return []
    analyze = _analyzer()
    stretches = _stretches(activity, duration)
    # Sorted on every field: the order of the input lists does not change the result.
    seen = sorted(TextAt(float(min(max(o.offset, 0.0), duration)), o.text) for o in ocr)
    said = sorted(
        (
            TranscriptPiece(
                float(min(max(p.start, 0.0), duration)), float(min(p.end, duration)), p.text
            )
            for p in transcript
        ),
        key=lambda p: (p.start, p.end, p.text),
    )
    visual = sorted((float(t), float(score)) for t, score in visual)

    boundaries = _boundaries(duration, stretches, visual, seen, said, params, analyze)
    edges = [(0.0, 1.0), *boundaries, (duration, 1.0)]
    materials = []
    for i in range(len(edges) - 1):
        start, end = edges[i][0], edges[i + 1][0]
        materials.append(
            ChapterMaterial(
                index=i,
                start_offset=start,
                end_offset=end,
                windows=_windows(stretches, start, end),
                seen=tuple(_dedupe(o.text for o in seen if start <= o.offset < end)),
                said=tuple(p.text for p in said if start <= p.start < end),
            )
        )
    texts = (summariser or TfidfSummariser(params.topics)).describe(materials)
    if len(texts) != len(materials):
        raise InvalidInput(
            f"the summariser described {len(texts)} chapters; there are {len(materials)}"
        )
    drafts = []
    for i, (material, text) in enumerate(zip(materials, texts, strict=True)):
        start, end = material.start_offset, material.end_offset
        drafts.append(
            ChapterDraft(
                start_offset=round(start, 3),
                end_offset=round(end, 3),
                title=text.title,
                summary=text.summary,
                key_topics=text.key_topics,
                confidence=round(_confidence(material, edges[i][1], edges[i + 1][1]), 3),
                thumbnail_offset=round(_thumbnail(material, stretches, seen, analyze), 3),
            )
        )
    return drafts


def _boundaries(
    duration: float,
    stretches: list[_Stretch],
    visual: Sequence[tuple[float, float]],
    seen: list[TextAt],
    said: list[TranscriptPiece],
    params: ChapterParams,
    analyze: Callable[[str], list[str]],
) -> list[tuple[float, float]]:
    """(offset, strength) of each boundary, in time order."""
    min_length = params.min_length
    if duration < 2 * min_length:
        return []
    window = params.window or min_length
    step = params.step or max(1.0, min_length / 20)
    acts = _ActivitySignal(stretches)
    vis = _VisualSignal(visual)
    words = _TextSignal([(o.offset, frozenset(analyze(o.text))) for o in seen])
    speech = _TextSignal([(p.start, frozenset(analyze(p.text))) for p in said])

    def strength(t: float) -> float:
        return (
            params.activity_weight * acts.score(t, window)
            + params.visual_weight * vis.score(t, step / 2, window)
            + params.ocr_weight * words.score(t, window)
            + params.transcript_weight * speech.score(t, window)
        )

    grid = [k * step for k in range(math.ceil(min_length / step), int(duration / step) + 1)]
    switches = [s.start for s in stretches[1:]]
    candidates = sorted(
        {round(t, 3) for t in (*grid, *switches) if min_length <= t <= duration - min_length}
    )
    # Rounded so that float noise cannot decide between equal moments: the earlier wins.
    scored = [(round(strength(t), 6), t) for t in candidates]
    # Only peaks: the slopes around a switch score high too, but are not boundaries.
    radius = min_length / 2
    times = [t for _, t in scored]
    peaks = []
    for score, t in scored:
        lo, hi = bisect.bisect_left(times, t - radius), bisect.bisect_right(times, t + radius)
        if all(other < score or (other == score and u >= t) for other, u in scored[lo:hi]):
            peaks.append((score, t))

    chosen: list[tuple[float, float]] = []

    def fits(t: float) -> bool:
        return all(abs(t - c) >= min_length for c, _ in chosen)

    for score, t in sorted(peaks, key=lambda st: (-st[0], st[1])):
        if score >= params.threshold and fits(t):
            chosen.append((t, min(score, 1.0)))
    if params.max_length is not None:
        while True:
            edges = sorted([0.0, duration, *(c for c, _ in chosen)])
            split = None
            for a, b in itertools.pairwise(edges):
                if b - a > params.max_length:
                    inside = [st for st in scored if a + min_length <= st[1] <= b - min_length]
                    if inside:
                        split = max(inside, key=lambda st: (st[0], -st[1]))
                        break
            if split is None:
                break
            chosen.append((split[1], min(split[0], 1.0)))
    return sorted(chosen)


def _windows(
    stretches: list[_Stretch], start: float, end: float
) -> tuple[tuple[str, str, float], ...]:
    time: dict[tuple[str, str], float] = defaultdict(float)
    for s in stretches:
        overlap = min(end, s.end) - max(start, s.start)
        if overlap > 0:
            time[(s.app, s.title)] += overlap
    ranked = sorted(time.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple((app, title, round(seconds, 3)) for (app, title), seconds in ranked)


def _dedupe(texts: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for text in texts:
        key = " ".join(text.split())
        if key and key not in seen:
            seen.add(key)
            result.append(text)
    return result


def _confidence(material: ChapterMaterial, left: float, right: float) -> float:
    """Half how clear its edges are, half how much one window dominates it."""
    length = material.end_offset - material.start_offset
    focused = sum(seconds for _, _, seconds in material.windows)
    if material.windows and focused > 0 and focused >= 0.5 * length:
        coherence = material.windows[0][2] / focused
    else:
        coherence = 0.5  # no activity to judge by
    return 0.5 * (left + right) / 2 + 0.5 * coherence


def _thumbnail(
    material: ChapterMaterial,
    stretches: list[_Stretch],
    seen: list[TextAt],
    analyze: Callable[[str], list[str]],
) -> float:
    """The moment that shows the chapter best.

    The OCR'd frame most like the chapter's other frames, preferring those taken while the
    dominant window had focus; else the middle of the dominant window's longest stretch;
    else the middle of the chapter.
    """
    start, end = material.start_offset, material.end_offset
    dominant = material.windows[0][:2] if material.windows else None
    spans = [
        (max(s.start, start), min(s.end, end))
        for s in stretches
        if (s.app, s.title) == dominant and s.end > start and s.start < end
    ]
    frames = [o for o in seen if start <= o.offset < end]
    if spans:
        during = [o for o in frames if any(a <= o.offset < b for a, b in spans)]
        frames = during or frames
    bags = [Counter(analyze(o.text)) for o in frames]
    if any(bags):
        vocab = sorted(set().union(*bags))
        index = {w: i for i, w in enumerate(vocab)}
        matrix = np.zeros((len(bags), len(vocab)))
        for row, bag in enumerate(bags):
            for word in bag:
                matrix[row, index[word]] = 1.0
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
        likeness = (unit @ unit.T).sum(axis=1)
        return frames[int(np.argmax(likeness))].offset  # first of equals: earliest
    if spans:
        a, b = max(spans, key=lambda ab: (ab[1] - ab[0], -ab[0]))
        return (a + b) / 2
    return (start + end) / 2


# --- the default summariser ----------------------------------------------------------------


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes >= 10 else f"{minutes:.1f} min"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _window_name(app: str, title: str) -> str:
    if not title:
        return app
    if not app or app.lower() in title.lower():
        return _short(title, 60)
    return f"{app}: {_short(title, 50)}"


class TfidfSummariser:
    """Key phrases ranked by TF-IDF across the session's chapters; plain-text titles.

    A chapter's title is its dominant window plus its top phrases; its summary says how
    long it lasted, where the time went and what it was about.
    """

    def __init__(self, topics: int = 5) -> None:
        self.topics = topics

    def describe(self, chapters: Sequence[ChapterMaterial]) -> list[ChapterText]:
        phrases = self._phrases(chapters)
        result = []
        for chapter, topics in zip(chapters, phrases, strict=True):
            head = _window_name(*chapter.windows[0][:2]) if chapter.windows else ""
            head_words = set(re.findall(r"\w+", head.lower()))
            fresh = [p for p in topics if not set(p.split()) <= head_words][:2]
            if head and fresh:
                title = f"{head} · {', '.join(fresh)}"
            elif head:
                title = head
            elif topics:
                title = ", ".join(topics[:3]).capitalize()
            else:
                title = f"Chapter {chapter.index + 1}"
            result.append(ChapterText(title, self._summary(chapter, topics), tuple(topics)))
        return result

    def _phrases(self, chapters: Sequence[ChapterMaterial]) -> list[list[str]]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = ["\n".join([*(t for _, t, _ in c.windows), *c.seen, *c.said]) for c in chapters]
        vectorizer = TfidfVectorizer(
            token_pattern=TOKEN_PATTERN,
            stop_words="english",
            ngram_range=(1, 2),
            sublinear_tf=True,
        )
        try:
            matrix = vectorizer.fit_transform(docs)
        except ValueError:  # no words at all
            return [[] for _ in chapters]
        terms = vectorizer.get_feature_names_out()
        result = []
        for row in range(matrix.shape[0]):
            weights = matrix.getrow(row).toarray().ravel()
            order = sorted(
                (i for i in np.flatnonzero(weights)), key=lambda i: (-weights[i], terms[i])
            )
            picked: list[str] = []
            for i in order:
                words = set(str(terms[i]).split())
                # A phrase and its own words say the same thing: keep the first ranked.
                if any(words <= set(p.split()) or set(p.split()) <= words for p in picked):
                    continue
                picked.append(str(terms[i]))
                if len(picked) == self.topics:
                    break
            result.append(picked)
        return result

    @staticmethod
    def _summary(chapter: ChapterMaterial, topics: list[str]) -> str:
        length = _minutes(chapter.end_offset - chapter.start_offset)
        parts = [length]
        if chapter.windows:
            parts.append(f"mostly in {_window_name(*chapter.windows[0][:2])}")
            others = list(dict.fromkeys(app for app, _, _ in chapter.windows[1:]))
            others = [a for a in others if a and a != chapter.windows[0][0]][:2]
            if others:
                parts[-1] += f", also {', '.join(others)}"
        line = " ".join(parts)
        if topics:
            line += f"; about {', '.join(topics[:3])}"
        if chapter.said:
            line += f"; said: “{_short(' '.join(chapter.said), 60)}”"
        return line + "."
