"""Full-text search in PostgreSQL (the `SearchIndex` part).

The query language is the one the contract names (SQLite FTS5's, over one column): it is
checked exactly as the SQLite store checks it, then parsed here and written as a
`tsquery` — a phrase becomes `a <-> b`, `prefix*` becomes `prefix:*`, AND/OR/NOT become
`&`, `|`, `& !`. The index (`search_items.tsv`, a GIN index) and the triggers that keep it
in step live in `_schema`. Hits are ranked by `ts_rank` normalised by length (a short text
with the word twice before a long one with it once, as BM25 ranks them), every match of
the query (the SQLite store ranks a query's newest 10 000 matches only).

Snippets and the marked OCR words are made here from the hit's text and the parsed query,
with the same folding as the index (case and accents), so they read as SQLite's do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from ...errors import InvalidInput
from ...models import OcrWord, SearchHit
from ..base import SearchIndex
from ..sqlite._enrichment import word_from, word_list
from ..sqlite._search import (
    _CLOSE,
    _OPEN,
    MAX_LIMIT,
    SNIPPET_TOKENS,
    _fold,
    check_fts_query,
    matched_words,
)
from ._connection import PostgresBase

_TOKEN = re.compile(r"[^\W_]+")
# A query's pieces: a quoted string ("" inside is a quote), a parenthesis, a *, or a
# bareword (FTS5's: letters, digits, _ and anything not ASCII).
_PIECE = re.compile(r'"((?:[^"]|"")*)"|([()*])|((?:[\w]|[^\x00-\x7f])+)|(\S)')


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]  # folded
    prefix: bool


@dataclass(frozen=True)
class Op:
    op: str  # AND, OR, NOT
    left: Node
    right: Node


Node = Phrase | Op | None  # None: matches nothing (a phrase of no words)


_UNSUPPORTED = (
    "(NEAR groups, column filters, ^ and +) is not supported by the PostgreSQL store; write "
    'words, "phrases", prefix*, AND, OR, NOT and parentheses'
)


def _pieces(query: str) -> Iterator[str | Phrase]:
    pieces = _PIECE.findall(query)
    for i, (quoted, mark, bare, other) in enumerate(pieces):
        if bare == "NEAR" and i + 1 < len(pieces) and pieces[i + 1][1] == "(":
            raise InvalidInput(f"cannot search for {query[:60]!r}: NEAR {_UNSUPPORTED}")
        if mark:
            yield mark
        elif bare in ("AND", "OR", "NOT"):
            yield bare
        elif bare or quoted:
            text = quoted.replace('""', '"') if quoted else bare
            yield Phrase(tuple(_fold(w) for w in _TOKEN.findall(text)), False)
        elif other:
            raise InvalidInput(f"cannot search for {query[:60]!r}: {other!r} {_UNSUPPORTED}")
        else:
            # `""` alone: a phrase of no words.
            yield Phrase((), False)


class _Parser:
    """FTS5's grammar over one column: NOT binds tightest, then AND (also implied between
    two phrases), then OR."""

    def __init__(self, query: str) -> None:
        self.items: list[str | Phrase] = []
        for piece in _pieces(query):
            if piece == "*":
                last = self.items[-1] if self.items else None
                if not isinstance(last, Phrase):
                    raise InvalidInput(f"cannot search for {query[:60]!r}: a lone *")
                self.items[-1] = Phrase(last.words, True)
            else:
                self.items.append(piece)
        self.at = 0
        self.query = query

    def parse(self) -> Node:
        node = self._or()
        if self.at != len(self.items):
            raise InvalidInput(f"cannot search for {self.query[:60]!r}: unexpected {self._peek()}")
        return node

    def _peek(self) -> str | Phrase | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def _or(self) -> Node:
        node = self._and()
        while self._peek() == "OR":
            self.at += 1
            node = _combine("OR", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._not()
        while (peek := self._peek()) == "AND" or isinstance(peek, Phrase) or peek == "(":
            if peek == "AND":
                self.at += 1
            node = _combine("AND", node, self._not())
        return node

    def _not(self) -> Node:
        node = self._primary()
        while self._peek() == "NOT":
            self.at += 1
            node = _combine("NOT", node, self._primary())
        return node

    def _primary(self) -> Node:
        peek = self._peek()
        self.at += 1
        if isinstance(peek, Phrase):
            return peek if peek.words else None
        if peek == "(":
            node = self._or()
            if self._peek() != ")":
                raise InvalidInput(f"cannot search for {self.query[:60]!r}: unbalanced (")
            self.at += 1
            return node
        raise InvalidInput(f"cannot search for {self.query[:60]!r}: unexpected {peek}")


def _combine(op: str, left: Node, right: Node) -> Node:
    """`left op right`, where None (matches nothing) is folded away."""
    if op == "AND":
        return None if left is None or right is None else Op(op, left, right)
    if op == "OR":
        return right if left is None else left if right is None else Op(op, left, right)
    return None if left is None else left if right is None else Op(op, left, right)


def tsquery(node: Node) -> str:
    """The node as `to_tsquery` text (every word is letters and digits only)."""
    if node is None:
        raise ValueError("a query that matches nothing has no tsquery")
    if isinstance(node, Phrase):
        last = len(node.words) - 1
        words = [w + (":*" if node.prefix and i == last else "") for i, w in enumerate(node.words)]
        return "(" + " <-> ".join(words) + ")"
    left, right = tsquery(node.left), tsquery(node.right)
    if node.op == "NOT":
        return f"({left} & !{right})"
    return f"({left} {'&' if node.op == 'AND' else '|'} {right})"


def _phrase_matches(tokens: list[str], phrase: Phrase) -> list[tuple[int, int]]:
    """The (first, last) token positions of each match of the phrase in the tokens."""
    found = []
    n = len(phrase.words)
    for start in range(len(tokens) - n + 1):
        for i, word in enumerate(phrase.words):
            token = tokens[start + i]
            last_prefix = phrase.prefix and i == n - 1
            if not (token.startswith(word) if last_prefix else token == word):
                break
        else:
            found.append((start, start + n - 1))
    return found


def _true_matches(node: Node, tokens: list[str]) -> tuple[bool, list[tuple[int, int]]]:
    """Whether the node matches the tokens (folded), and the phrase matches that make it
    so: as FTS5, only the branches that hold for this text are marked (not an OR's other
    branch, nor anything after NOT)."""
    if node is None:
        return False, []
    if isinstance(node, Phrase):
        found = _phrase_matches(tokens, node)
        return bool(found), found
    left, left_found = _true_matches(node.left, tokens)
    right, right_found = _true_matches(node.right, tokens)
    if node.op == "AND":
        return (True, left_found + right_found) if left and right else (False, [])
    if node.op == "OR":
        return left or right, (left_found if left else []) + (right_found if right else [])
    return (True, left_found) if left and not right else (False, [])


def _matches(tokens: list[str], node: Node) -> list[tuple[int, int]]:
    """The spans FTS5 marks: the true matches, overlapping ones merged, in order."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(_true_matches(node, tokens)[1]):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


def highlight(body: str, query: Node, opening: str, closing: str) -> tuple[str, str]:
    """The body with every match between `opening` and `closing`, and a snippet of it
    marked with [ and ]: the window of `SNIPPET_TOKENS` words with the most matched words,
    `…` where cut."""
    spans = [m.span() for m in _TOKEN.finditer(body)]
    folded = body.lower() if body.isascii() else None  # the common case, folded at once
    tokens = [folded[a:b] if folded is not None else _fold(body[a:b]) for a, b in spans]
    matches = _matches(tokens, query)

    def render(first: int, last: int, start: int, end: int, marks: tuple[str, str]) -> str:
        """Tokens first..last-1 (the text from `start` to `end`), matches marked."""
        out, at = [], start
        for a, b in matches:
            a, b = max(a, first), min(b, last - 1)
            if a > b:
                continue
            out += [body[at : spans[a][0]], marks[0], body[spans[a][0] : spans[b][1]], marks[1]]
            at = spans[b][1]
        out.append(body[at:end])
        return "".join(out)

    whole = render(0, len(spans), 0, len(body), (opening, closing))
    if len(spans) <= SNIPPET_TOKENS:
        return whole, render(0, len(spans), 0, len(body), ("[", "]"))
    # The window with the most marked words: counts of marked words before each token.
    marked = [0] * (len(spans) + 1)
    for a, b in matches:
        for i in range(a, b + 1):
            marked[i + 1] = 1
    before = list(accumulate(marked))
    best = max(
        range(len(spans) - SNIPPET_TOKENS + 1),
        key=lambda first: (before[first + SNIPPET_TOKENS] - before[first], -first),
    )
    last = best + SNIPPET_TOKENS
    start = 0 if best == 0 else spans[best][0]
    end = len(body) if last == len(spans) else spans[last - 1][1]
    snippet = render(best, last, start, end, ("[", "]"))
    return whole, ("…" if best else "") + snippet + ("" if end == len(body) else "…")


# Every match is ranked (no cap): the tsvector that ranking reads is kept in the row and
# the length it divides by is stored (`words`), so a match costs about a microsecond (2
# busy cores, bench/bench_team_store.py); the tsquery is made once, as a FROM item. The
# score is `ts_rank` normalised by log2(1 + words), i.e. `ts_rank(tsv, q, 1)` without
# counting the words again. The text, the session's name and the OCR words are read for
# the page of hits only, in the same statement (one snapshot, one round trip).
_SEARCH = """
WITH ranked AS MATERIALIZED (
    SELECT i.id, ts_rank(i.tsv, q, 0) * ln(2::float8) / ln(i.words + 1::float8) AS rank
    FROM to_tsquery('taskerino', %(q)s) AS q, search_items i
    WHERE i.tsv @@ q {session}
    ORDER BY rank DESC, i.id DESC
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT i.kind, i.item_id, i.session_id, i.media_offset, s.name, i.body, r.rank, o.words
FROM ranked r
JOIN search_items i ON i.id = r.id
JOIN sessions s ON s.id = i.session_id
LEFT JOIN ocr_texts o ON i.kind = 'ocr' AND o.id = i.item_id
ORDER BY r.rank DESC, r.id DESC
"""

# The page of hits the RUM queries below rank (`ranked`: id, distance), read in full.
_RANKED_HITS = """
SELECT i.kind, i.item_id, i.session_id, i.media_offset, s.name, i.body,
    1 / r.distance::float8, o.words
FROM ranked r
JOIN search_items i ON i.id = r.id
JOIN sessions s ON s.id = i.session_id
LEFT JOIN ocr_texts o ON i.kind = 'ocr' AND o.id = i.item_id
"""

# With a RUM index (schema 4, where the server has the extension) the index ranks: `tsv <=>
# query` is RUM's distance, 1 / its score (a cover-density score computed from the word
# positions stored in the index: more and closer matches score higher; no division by the
# text's length), and `ORDER BY tsv <=> query LIMIT n` returns the best matches from the
# index without reading the table for each match. Ties come in the order of the rows'
# places in the table (RUM's sort breaks them by that), so the order is total and pages
# follow on. The tsquery is written in place (not a FROM item) so that it is a constant
# the index scan can order by.
_SEARCH_RUM = (
    """
WITH ranked AS MATERIALIZED (
    SELECT id, distance, row_number() OVER () AS n
    FROM (
        SELECT i.id, i.tsv <=> to_tsquery('taskerino', %(q)s) AS distance
        FROM search_items i
        WHERE i.tsv @@ to_tsquery('taskerino', %(q)s)
        ORDER BY i.tsv <=> to_tsquery('taskerino', %(q)s)
        LIMIT %(limit)s OFFSET %(offset)s
    ) page
)
"""
    + _RANKED_HITS
    + "ORDER BY r.n\n"
)

_INDEX_ORDER_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
_INDEX_ORDER_RESET = "RESET enable_seqscan; RESET enable_bitmapscan"

# One session's matches are few: they are found by the session's index and sorted, by the
# same score and the same tie-break (the row's place) as the index's order.
_SEARCH_RUM_SESSION = (
    """
WITH ranked AS MATERIALIZED (
    SELECT i.id, i.tsv <=> q AS distance, i.ctid AS place
    FROM to_tsquery('taskerino', %(q)s) AS q, search_items i
    WHERE i.session_id = %(session)s AND i.tsv @@ q
    ORDER BY distance, place
    LIMIT %(limit)s OFFSET %(offset)s
)
"""
    + _RANKED_HITS
    + "ORDER BY r.distance, r.place\n"
)

# What each kind of row puts in the index: (kind, table, offset, body, session column).
_SOURCES = (
    (
        "session",
        "sessions",
        "0",
        "CASE WHEN description = '' THEN name ELSE name || ' — ' || description END",
        "id",
    ),
    ("note", "context_items", "media_offset", "content", "session_id"),
    ("comment", "screenshots", "media_offset", "user_comment", "session_id"),
    (
        "activity",
        "activity",
        "media_offset",
        "CASE WHEN app = '' THEN title WHEN title = '' THEN app ELSE title || ' — ' || app END",
        "session_id",
    ),
    ("ocr", "ocr_texts", "media_offset", "text", "session_id"),
    ("transcript", "transcript_lines", "start_offset", "text", "session_id"),
)


class PostgresSearchIndex(PostgresBase, SearchIndex):
    def reindex_session(self, session_id: str) -> int:
        with self.transaction():
            self._write("DELETE FROM search_items WHERE session_id = %s", (session_id,))
            for kind, table, offset, body, owner in _SOURCES:
                self._write(
                    "INSERT INTO search_items (kind, item_id, session_id, media_offset, body)"
                    f" SELECT %s, id, {owner}, {offset}, {body} FROM {table}"
                    f" WHERE {owner} = %s AND coalesce({body}, '') <> ''",
                    (kind, session_id),
                )
            rows = self._write_returning(
                "SELECT count(*) FROM search_items WHERE session_id = %s", (session_id,)
            )
            return int(rows[0][0])

    def search(
        self, query: str, *, session_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[SearchHit]:
        check_fts_query(query)
        if not (isinstance(limit, int) and 1 <= limit <= MAX_LIMIT):
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
        if not (isinstance(offset, int) and offset >= 0):
            raise InvalidInput(f"offset must be a whole number from 0, not {offset!r}")
        node = _Parser(query).parse()
        if node is None:
            return []
        params = {"q": tsquery(node), "session": session_id, "limit": limit, "offset": offset}
        if self.ranks_in_index:
            sql = _SEARCH_RUM if session_id is None else _SEARCH_RUM_SESSION
        else:
            # Two statements rather than one with "session IS NULL OR": each its own plan.
            sql = _SEARCH.replace(
                "{session}", "" if session_id is None else "AND i.session_id = %(session)s"
            )
        if not (self.ranks_in_index and session_id is None):
            with self._reading() as db:
                return [self._hit(r, node) for r in db.execute(sql, params).fetchall()]
        # The index's order is the ranking (ties by place): the plan must be the RUM index
        # scan, which the planner might not choose on a table it has no statistics of yet
        # (a bitmap scan and a sort, slower, ties in any order). For this statement only.
        with self._reading(snapshot=True) as db:
            db.execute(_INDEX_ORDER_ONLY)
            try:
                rows = db.execute(sql, params).fetchall()
            finally:
                db.execute(_INDEX_ORDER_RESET)  # inside a caller's transaction
        return [self._hit(r, node) for r in rows]

    @staticmethod
    def _hit(row: Any, query: Node) -> SearchHit:
        kind, item_id, session_id, offset, name, body, rank, boxes = row
        highlighted, snippet = highlight(body, query, _OPEN, _CLOSE)
        words: list[OcrWord] = []
        if kind == "ocr":
            stored = word_list(boxes) if boxes is not None else []
            texts = [str(item[0]) for item in stored]
            words = [word_from(stored[i]) for i in matched_words(highlighted, texts)]
        return SearchHit(
            session_id=session_id,
            kind=kind,
            media_offset=offset,
            snippet=snippet,
            item_id=item_id,
            session_name=name,
            score=float(rank),
            words=words,
        )
