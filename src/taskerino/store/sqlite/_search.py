"""Full-text search in SQLite with FTS5 (the `SearchIndex` part).

The index itself (`search_index`, `search_items`) and the triggers that keep it in step
with the text of every session live in `_schema`. A search runs the user's query against
the `body` column only, ranked by BM25 (FTS5's `rank`, whose ordering FTS5 does itself, so
snippets are made for the page asked for and not for every match).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import unicodedata
import weakref
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from ...errors import InvalidInput
from ...models import OcrWord, SearchHit
from ...rules import check_query
from ..base import SearchIndex
from ._connection import SQLiteBase
from ._enrichment import word_from, word_list

MAX_LIMIT = 1000
# Ranking costs about a microsecond a match: a query that matches more items than this
# (a word in nearly every text) is ranked among its most recently indexed matches only,
# which keeps every search within tens of milliseconds.
RANKED_AT_MOST = 10_000
SNIPPET_TOKENS = 16
TOKENIZER = "unicode61 remove_diacritics 2"

# Marks of the matched words in the full OCR text: private-use characters, never in it.
_OPEN, _CLOSE = "\ue000", "\ue001"
_NOT_ASCII = re.compile(f"[^\\x00-\\x7f{_OPEN}{_CLOSE}]")
_MARKS = re.compile(f"([{_OPEN}{_CLOSE}])")
# A marked span, or a token outside the marks.
_SPANS = re.compile(f"{_OPEN}[^{_CLOSE}]*{_CLOSE}|[^\\W_]+")
# Letters and digits, as the unicode61 tokenizer splits text.
_TOKEN = re.compile(r"[^\W_]+")

_SEARCH = f"""
SELECT i.kind, i.item_id, i.session_id, i.media_offset, s.name,
  snippet(search_index, 0, '[', ']', '…', {SNIPPET_TOKENS}),
  CASE WHEN i.kind = 'ocr'
    THEN highlight(search_index, 0, char({ord(_OPEN)}), char({ord(_CLOSE)})) END,
  rank
FROM search_index
JOIN search_items i ON i.id = search_index.rowid
JOIN sessions s ON s.id = i.session_id
WHERE search_index MATCH :match AND rank MATCH 'bm25(1.0, 0.0)'
  AND search_index.rowid >= :floor AND (:session IS NULL OR i.session_id = :session)
ORDER BY rank
LIMIT :limit OFFSET :offset
"""

_HELP = (
    'a query is words, "phrases" in double quotes and prefix* (joined, if wanted, by AND, '
    "OR, NOT in capitals and parentheses); put words with other punctuation in double quotes"
)


class _Checker:
    """A thread's empty in-memory index that a query is tried on first."""

    __slots__ = ("__weakref__", "db")

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute(f"CREATE VIRTUAL TABLE q USING fts5(body, tokenize = '{TOKENIZER}')")
        weakref.finalize(self, self.db.close)


_local = threading.local()


def check_fts_query(query: str) -> str:
    """`query` if it is a query of the one `body` column; InvalidInput saying why not.

    The query is tried on an empty table of its own, so that a malformed query is never
    mistaken for a damaged database (and the other way round), and so that a query cannot
    name the index's other columns. A query that passes is whole (its parentheses and
    quotes balanced), so it can be put in parentheses behind a column filter safely.
    """
    check_query(query)
    if not query.strip():
        raise InvalidInput(f"the search query is empty: {_HELP}")
    checker: _Checker | None = getattr(_local, "checker", None)
    if checker is None:
        checker = _local.checker = _Checker()
    try:
        checker.db.execute("SELECT 1 FROM q WHERE q MATCH ?", (query,)).fetchall()
    except sqlite3.Error as exc:
        reason = str(exc).removeprefix("fts5: ")
        if reason == 'syntax error near ""':
            reason = "it ends where more was expected"
        elif reason.startswith("no such column"):
            reason = 'a ":" or "-" outside double quotes'
        elif reason.startswith("unknown special query"):
            reason = "a lone *"
        shown = query if len(query) <= 60 else query[:57] + "..."
        raise InvalidInput(f"cannot search for {shown!r} ({reason}): {_HELP}") from None
    return query


def _fold(text: str) -> str:
    """Case and accents removed, as the index compares words."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _fold_marked(highlighted: str) -> str:
    """`_fold` of a text with marks in it, the marks kept."""
    if _NOT_ASCII.search(highlighted) is None:
        return highlighted.lower()
    return "".join(p if p in (_OPEN, _CLOSE) else _fold(p) for p in _MARKS.split(highlighted))


def matched_words(highlighted: str, texts: Sequence[str]) -> list[int]:
    """Which of the words (of an OCR text, by index) the index matched, as `highlight`
    marked them in the text: prefixes, phrases and accents are the index's own decision.

    When the words spell the text token for token (OCR engines build the text from them),
    the marks are taken by position, so a phrase marks its own words and not the same words
    elsewhere; otherwise every word that holds a marked token counts."""
    tokens: list[str] = []
    marked: list[int] = []  # positions in `tokens`
    # One pass of a regex over the text rather than a call per mark: OCR texts are long
    # and a prefix query can mark a word in three.
    for piece in _SPANS.findall(_fold_marked(highlighted)):
        if piece[0] != _OPEN:
            tokens.append(piece)
            continue
        inner = piece[1:-1]
        found = [inner] if inner.isalnum() else _TOKEN.findall(inner)
        marked += range(len(tokens), len(tokens) + len(found))
        tokens += found
    if not marked:
        return []
    # Folded once as a whole: this runs for every word of every OCR hit.
    folded = _fold("\n".join(texts))
    words = folded.split("\n")
    if len(words) == len(texts) and _TOKEN.findall(folded) == tokens:
        ends = list(accumulate(len(_TOKEN.findall(w)) for w in words))
        return sorted({bisect_right(ends, position) for position in marked})
    wanted = {tokens[position] for position in marked}
    return [i for i, text in enumerate(texts) if wanted.intersection(_TOKEN.findall(_fold(text)))]


# What each kind of row puts in the index: (kind, source rows, its id, offset, body).
_SOURCES = (
    (
        "session",
        "sessions",
        "id",
        "0",
        "CASE WHEN description = '' THEN name ELSE name || ' — ' || description END",
        "id",
    ),
    ("note", "context_items", "id", "media_offset", "content", "session_id"),
    ("comment", "screenshots", "id", "media_offset", "user_comment", "session_id"),
    (
        "activity",
        "activity",
        "id",
        "media_offset",
        "CASE WHEN app = '' THEN title WHEN title = '' THEN app ELSE title || ' — ' || app END",
        "session_id",
    ),
    ("ocr", "ocr_texts", "id", "media_offset", "text", "session_id"),
    ("transcript", "transcript_lines", "id", "start_offset", "text", "session_id"),
)


class SQLiteSearchIndex(SQLiteBase, SearchIndex):
    def reindex_session(self, session_id: str) -> int:
        with self.transaction(), self._reading() as db:
            db.execute(
                "DELETE FROM search_index WHERE rowid IN"
                " (SELECT id FROM search_items WHERE session_id = ?)",
                (session_id,),
            )
            db.execute("DELETE FROM search_items WHERE session_id = ?", (session_id,))
            for kind, table, key, offset, body, owner in _SOURCES:
                where = f"{owner} = ?" + (
                    " AND coalesce(user_comment, '') <> ''" if kind == "comment" else ""
                )
                db.execute(
                    "INSERT INTO search_items (kind, item_id, session_id, media_offset)"
                    f" SELECT ?, {key}, {owner}, {offset} FROM {table} WHERE {where}",
                    (kind, session_id),
                )
                db.execute(
                    "INSERT INTO search_index (rowid, body, session)"
                    f" SELECT i.id, {body}, t.{owner} FROM search_items i"
                    f" JOIN {table} t ON i.kind = ? AND t.{key} = i.item_id"
                    f" WHERE i.session_id = ?",
                    (kind, session_id),
                )
            row = db.execute(
                "SELECT count(*) FROM search_items WHERE session_id = ?", (session_id,)
            ).fetchone()
            return int(row[0])

    def search(
        self, query: str, *, session_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SearchHit]:
        check_fts_query(query)
        if not (isinstance(limit, int) and 1 <= limit <= MAX_LIMIT):
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
        if not (isinstance(offset, int) and offset >= 0):
            raise InvalidInput(f"offset must be a whole number from 0, not {offset!r}")
        match = f"body : ({query})"
        if session_id is not None:
            # Lets the index intersect with the session's rows itself; the equality in the
            # query makes it exact.
            match += ' AND session : "' + session_id.replace('"', '""') + '"'
        with self._reading() as db:
            # Counting matches without ranking them is cheap: find where the newest
            # RANKED_AT_MOST of them begin.
            floor = db.execute(
                "SELECT rowid FROM search_index WHERE search_index MATCH ?"
                " ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                (match, RANKED_AT_MOST - 1),
            ).fetchone()
            params = {
                "match": match,
                "session": session_id,
                "floor": floor[0] if floor else 0,
                "limit": limit,
                "offset": offset,
            }
            rows = db.execute(_SEARCH, params).fetchall()
            boxes = self._words(db, [r[1] for r in rows if r[0] == "ocr"])
        return [self._hit(r, boxes) for r in rows]

    @staticmethod
    def _words(db: sqlite3.Connection, ocr_ids: list[str]) -> dict[str, list[Any]]:
        if not ocr_ids:
            return {}
        return {
            r[0]: word_list(r[1])
            for r in db.execute(
                "SELECT id, words FROM ocr_texts WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ocr_ids),),
            )
        }

    @staticmethod
    def _hit(row: Any, boxes: dict[str, list[Any]]) -> SearchHit:
        kind, item_id, session_id, offset, name, snippet, highlighted, rank = row
        words: list[OcrWord] = []
        if kind == "ocr":
            stored = boxes.get(item_id, [])
            texts = [str(item[0]) for item in stored]
            words = [word_from(stored[i]) for i in matched_words(highlighted, texts)]
        return SearchHit(
            session_id=session_id,
            kind=kind,
            media_offset=offset,
            snippet=snippet,
            item_id=item_id,
            session_name=name,
            score=-rank,
            words=words,
        )
