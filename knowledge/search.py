"""Passages and ranked full-text search over one workspace's knowledge.

Documents are split into paragraph-sized passages (at most PASSAGE_MAX_CHARS), so a search result
quotes the part that matters rather than a whole document.

Ranking:
- PostgreSQL: `websearch_to_tsquery('english', ...)` against the generated, GIN-indexed
  `search_vector` column, ranked with `ts_rank` (passage text weighs more than the title).
- Any other database (the embedded SQLite default): term-overlap ranking in Python over candidate
  passages found with LIKE (at most FALLBACK_CANDIDATES of them), with light English stemming and
  the same rules below. It suits the small corpora an embedded install holds and needs no SQLite
  extension.

Rules shared by both: a plain query ("refund policy for enterprise") first returns passages that
contain every term, then those that contain only some, each group by rank; a query written with
search syntax (`"exact phrase"`, `-excluded`, `this or that`) is applied as written. Pinned
documents (a thread's `knowledge_document_ids`) come first within each group.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q

from knowledge.models import Passage
from workspaces.tenancy import Scope

PASSAGE_TARGET_CHARS = 800
PASSAGE_MAX_CHARS = 1500
MAX_HITS = 1000  # ranked passages considered per query
MAX_TERMS = 32
SEARCH_CONFIG = "english"  # must match migration 0004's generated column

_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")
_NEGATED = re.compile(r"(?:^|\s)-(\w+)")
_PHRASE = re.compile(r'"([^"]*)"')
_SEARCH_SYNTAX = re.compile(r'"|(?:^|\s)-\w|\bor\b', re.IGNORECASE)

# Words too common to rank by (the fallback's equivalent of PostgreSQL's english stop words).
STOP_WORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i in is it its me my of on or "
    "our so that the their them there these they this to was we were what when where which who why "
    "will with you your".split()
)


# --- passages ---------------------------------------------------------------------------------
def split_passages(body: str) -> list[str]:
    """Paragraph-sized passages: short paragraphs merge, long ones split at sentence ends."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    pieces: list[str] = []
    for paragraph in _BLANK_LINES.split(text):
        paragraph = paragraph.strip()
        if paragraph:
            pieces.extend(_split_long(paragraph))
    return _pack(pieces, "\n\n", _paragraph_joins)


def _paragraph_joins(current: str, piece: str, combined: int) -> bool:
    # A Markdown heading starts a passage and stays with the paragraph under it.
    if piece.startswith("#"):
        return False
    heading_only = current.startswith("#") and "\n" not in current
    return combined <= PASSAGE_TARGET_CHARS or (heading_only and combined <= PASSAGE_MAX_CHARS)


def _split_long(paragraph: str) -> list[str]:
    if len(paragraph) <= PASSAGE_MAX_CHARS:
        return [paragraph]
    parts = [part for sentence in _SENTENCE_END.split(paragraph) for part in _hard_cut(sentence)]
    return _pack(parts, " ", lambda current, part, combined: combined <= PASSAGE_TARGET_CHARS)


def _pack(pieces: list[str], separator: str, joins) -> list[str]:
    """Consecutive pieces joined while `joins(current, piece, combined_length)` allows it."""
    packed: list[str] = []
    current = ""
    for piece in pieces:
        if current and not joins(current, piece, len(current) + len(separator) + len(piece)):
            packed.append(current)
            current = piece
        else:
            current = f"{current}{separator}{piece}" if current else piece
    if current:
        packed.append(current)
    return packed


def _hard_cut(text: str) -> list[str]:
    """A run-on sentence cut at whitespace (or anywhere, for one endless word) into bounded parts."""
    parts = []
    while len(text) > PASSAGE_MAX_CHARS:
        cut = text.rfind(" ", PASSAGE_TARGET_CHARS // 2, PASSAGE_MAX_CHARS)
        if cut <= 0:
            cut = PASSAGE_MAX_CHARS
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


# --- queries ----------------------------------------------------------------------------------
def query_terms(query: str) -> list[str]:
    """The distinct lowercase words of a query, without `-excluded` ones and the word `or`."""
    excluded = {word.lower() for word in _NEGATED.findall(query)}
    terms = [w.lower() for w in _WORD.findall(query)]
    kept = [t for t in dict.fromkeys(terms) if t != "or" and t not in excluded]
    return kept[:MAX_TERMS]


def uses_search_syntax(query: str) -> bool:
    return bool(_SEARCH_SYNTAX.search(query))


@dataclass(frozen=True)
class PassageHit:
    passage_id: int
    document_id: str
    score: float
    complete: bool  # every term of the query matched (or the query's own syntax did)
    # What a tool quotes, read with the ranking (one query): the passage, its document's title and source.
    text: str = ""
    title: str = ""
    source_url: str = ""


def rank_passages(*, scope: Scope, query: str, pinned_document_ids: Iterable[str] = ()) -> list[PassageHit]:
    """Up to MAX_HITS matching passages in scope, best first."""
    if not query_terms(query):
        return []
    if connection.vendor == "postgresql":
        hits = _rank_postgres(scope, query)
    else:
        hits = _rank_term_overlap(scope, query)
    pinned = set(pinned_document_ids)
    hits.sort(key=lambda h: (not h.complete, h.document_id not in pinned, -h.score, h.passage_id))
    return hits[:MAX_HITS]


# One statement, written by hand (every reply's tool call runs it): the passages holding any word,
# those holding all of them first, each with its document's source; the join names its workspace too.
_RANK_SQL = f"""
SELECT p.id, p.document_id, ts_rank(p.search_vector, loose.q) AS rank, p.search_vector @@ whole.q AS complete,
       p.text, p.document_title, d.source_url
FROM knowledge_passage p
JOIN knowledge_document d ON d.id = p.document_id AND d.workspace_id = %s,
     websearch_to_tsquery('{SEARCH_CONFIG}', %s) AS loose(q),
     websearch_to_tsquery('{SEARCH_CONFIG}', %s) AS whole(q)
WHERE p.workspace_id = %s AND p.search_vector @@ loose.q
ORDER BY complete DESC, rank DESC, p.id
LIMIT %s
"""


def _rank_postgres(scope: Scope, query: str) -> list[PassageHit]:
    # Plain words: match any of them, rank passages holding all of them first.
    loose = query if uses_search_syntax(query) else " or ".join(query_terms(query))
    with connection.cursor() as cursor:
        cursor.execute(_RANK_SQL, [scope.workspace_id, loose, query, scope.workspace_id, MAX_HITS])
        rows = cursor.fetchall()
    return [
        PassageHit(pk, document_id, float(rank), bool(complete), text, title, source_url)
        for pk, document_id, rank, complete, text, title, source_url in rows
    ]


# --- the portable fallback --------------------------------------------------------------------
FALLBACK_CANDIDATES = 5000
TITLE_ONLY_WEIGHT = 0.2


def stem(word: str) -> str:
    """A light English suffix stripper: enough for `policies` to meet `policy`."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _stems(text: str) -> Counter:
    return Counter(stem(w) for w in _WORD.findall(text.lower()))


def _rank_term_overlap(scope: Scope, query: str) -> list[PassageHit]:
    terms = [t for t in query_terms(query) if t not in STOP_WORDS]
    stems = list(dict.fromkeys(stem(t) for t in terms))
    if not stems:
        return []
    excluded = {stem(w.lower()) for w in _NEGATED.findall(query)}
    # Written with search syntax: quoted phrases must appear, and without `or` every term must.
    syntax = uses_search_syntax(query)
    phrases = [" ".join(p.lower().split()) for p in _PHRASE.findall(query) if p.strip()] if syntax else []
    every_term = syntax and not re.search(r"\bor\b", query, re.IGNORECASE)
    condition = Q()
    for s in stems:
        fragment = s[:-1] if len(s) > 4 else s  # `polic` finds both policy and policies
        condition |= Q(text__icontains=fragment) | Q(document_title__icontains=fragment)
    candidates = (
        Passage.objects.for_scope(scope)
        .filter(condition, document__workspace_id=scope.workspace_id)
        .order_by("id")
        .values_list("id", "document_id", "text", "document_title", "document__source_url")[:FALLBACK_CANDIDATES]
    )
    hits = []
    for pk, document_id, text, title, source_url in candidates:
        counts, title_stems = _stems(text), set(_stems(title))
        if excluded & (set(counts) | title_stems):
            continue
        if phrases:
            folded = " ".join(f"{title} {text}".lower().split())
            if not all(phrase in folded for phrase in phrases):
                continue
        score = 0.0
        matched = 0
        for s in stems:
            if counts[s]:
                score += 1 + math.log(counts[s])
                matched += 1
            elif s in title_stems:
                score += TITLE_ONLY_WEIGHT
                matched += 1
        complete = matched == len(stems)
        if matched and (complete or not every_term):
            hits.append(PassageHit(pk, document_id, round(score / len(stems), 6), complete, text, title, source_url))
    return hits
