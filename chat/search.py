"""Full-text search of thread titles and message text, with a ranked, highlighted snippet per hit.

A query is its words (the same words knowledge search takes, `knowledge.search.query_terms`), every
one required and each matched as a word prefix: "pric plan" finds "Pricing of the Pro plan".

- PostgreSQL: `search_vector @@ to_tsquery(config, 'pric':* & 'plan':*)` against the generated,
  GIN-indexed columns of migration chat 0003, with the workspace's `search_config` (so 'english'
  stems both sides); rank is `ts_rank`, the snippet `ts_headline`.
- SQLite (the embedded default): the FTS5 tables of the same migration, `"pric"* "plan"*`; rank is
  `-bm25()`, the snippet FTS5's `snippet()`.

Rank is higher for a better match, comparable within one result list only. Snippets are plain
text; `highlights` are the [start, end) offsets (Unicode code points) of the matched words in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypedDict

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from knowledge.search import query_terms
from workspaces.models import Workspace
from workspaces.tenancy import Scope

# Private-use characters mark a match inside a snippet; a text that itself holds them loses them
# from its snippet and may be highlighted wrongly there (its content is unaffected).
MARK_START, MARK_END = "\ue000", "\ue001"
SNIPPET_WORDS = 16
HEADLINE_OPTIONS = (
    f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={SNIPPET_WORDS}, MinWords=6, ShortWord=2, "
    "MaxFragments=1, FragmentDelimiter=\" … \""
)


class SearchHit(TypedDict):
    rank: float
    snippet: str
    highlights: list[list[int]]
    message_id: str | None


@dataclass(frozen=True)
class TextQuery:
    terms: tuple[str, ...]
    config: str  # the workspace's text search configuration (PostgreSQL)

    @property
    def tsquery(self) -> str:
        return " & ".join(f"'{term}':*" for term in self.terms)

    @property
    def fts5(self) -> str:
        return " ".join(f'"{term}"*' for term in self.terms)


def text_query(scope: Scope, text: str) -> TextQuery | None:
    """The query `text` asks for in this scope's workspace, or None when it holds no word."""
    terms = tuple(term.replace("'", "").replace('"', "") for term in query_terms(text))
    if not terms:
        return None
    config = "simple"
    if connection.vendor == "postgresql":
        config = scope.search_config or (
            Workspace.objects.filter(pk=scope.workspace_id).values_list("search_config", flat=True).first()
        )
    return TextQuery(terms=terms, config=config or "simple")


def _postgres() -> bool:
    return connection.vendor == "postgresql"


# --- filters ----------------------------------------------------------------------------------
# A query the planner expects to match at least this many messages (or titles) of the workspace
# is "dense": its threads are found by walking the list in its order and looking into each thread
# (a few threads in, a page is full). Below it, the matches are collected through the GIN indexes
# and their threads sorted. The planner's estimate (its statistics of the words in the column)
# costs a plan and no scan; a wrong guess is slower, never wrong.
DENSE_MATCHES = 2000


def threads_matching(queryset: QuerySet, *, scope: Scope, query: TextQuery) -> QuerySet:
    """Threads whose title, or any of whose messages, matches."""
    sql, params = thread_match_sql(scope=scope, query=query)
    return queryset.filter(RawSQL(sql, params, output_field=BooleanField()))


def thread_match_sql(*, scope: Scope, query: TextQuery) -> tuple[str, list]:
    """The condition behind `threads_matching`, on the row of `"chat_thread"`, with its parameters."""
    if _postgres():
        messages = (
            'SELECT m."thread_id" FROM "chat_message" m WHERE m."workspace_id" = %s '
            "AND m.search_vector @@ to_tsquery(%s::regconfig, %s)"
        )
        titles = (
            'SELECT t."id" FROM "chat_thread" t WHERE t."workspace_id" = %s '
            "AND t.search_vector @@ to_tsquery(%s::regconfig, %s)"
        )
        each = [scope.workspace_id, query.config, query.tsquery]
        if _estimated_rows(f"({messages}) UNION ALL ({titles})", each * 2) < DENSE_MATCHES:
            # The matching threads' ids, collected first (an array: the planner looks them up by
            # primary key, then sorts the few), never a walk of the whole list hoping for them.
            sql, params = f'"chat_thread"."id" = ANY(ARRAY({messages} UNION {titles}))', each * 2
        else:
            # A look into each thread as the walk reaches it. OFFSET 0 keeps PostgreSQL from
            # turning the EXISTS into a hash of every matching message first.
            sql = (
                '("chat_thread"."search_vector" @@ to_tsquery(%s::regconfig, %s) OR EXISTS ('
                'SELECT 1 FROM "chat_message" m WHERE m."workspace_id" = %s AND m."thread_id" = "chat_thread"."id" '
                "AND m.search_vector @@ to_tsquery(%s::regconfig, %s) OFFSET 0))"
            )
            params = [query.config, query.tsquery, scope.workspace_id, query.config, query.tsquery]
    else:
        sql = (
            '("chat_thread".rowid IN (SELECT rowid FROM chat_thread_fts WHERE chat_thread_fts MATCH %s) OR '
            '"chat_thread"."id" IN (SELECT m."thread_id" FROM "chat_message" m WHERE m."workspace_id" = %s '
            "AND m.rowid IN (SELECT rowid FROM chat_message_fts WHERE chat_message_fts MATCH %s)))"
        )
        params = [query.fts5, scope.workspace_id, query.fts5]
    return sql, params


def _estimated_rows(sql: str, params: list) -> float:
    """The rows PostgreSQL's planner expects `sql` to return (EXPLAIN, nothing is run)."""
    (plan,) = _fetch(f"EXPLAIN (FORMAT JSON) {sql}", params)[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def messages_matching(queryset: QuerySet, *, query: TextQuery) -> QuerySet:
    if _postgres():
        sql = '"chat_message"."search_vector" @@ to_tsquery(%s::regconfig, %s)'
        params = [query.config, query.tsquery]
    else:
        sql = '"chat_message".rowid IN (SELECT rowid FROM chat_message_fts WHERE chat_message_fts MATCH %s)'
        params = [query.fts5]
    return queryset.filter(RawSQL(sql, params, output_field=BooleanField()))


# --- hits: rank and snippet for the rows of one page ------------------------------------------
def message_hits(*, scope: Scope, query: TextQuery, message_ids: list[str]) -> dict[str, SearchHit]:
    """For each matching message among `message_ids`: its rank and snippet."""
    return _best_hits(
        "chat_message", "content", key="x.id", label="x.id", among="x.id", ids=message_ids, scope=scope, query=query
    )


def thread_hits(*, scope: Scope, query: TextQuery, thread_ids: list[str]) -> dict[str, SearchHit]:
    """For each thread of `thread_ids`: its best matching message (or its title when only that
    matches), with that message's snippet; the rank is the better of the title's and the message's."""
    messages = dict(
        table="chat_message", column="content", key="x.thread_id", label="x.id", among="x.thread_id", ids=thread_ids,
        scope=scope, query=query,
    )
    titles = dict(
        table="chat_thread", column="title", key="x.id", label="NULL", among="x.id", ids=thread_ids,
        scope=scope, query=query,
    )
    if not thread_ids:
        return {}
    if _postgres():
        # Both in one round trip: the messages' best hits, then the titles'.
        messages_sql, messages_params = _best_hits_sql(**messages)
        titles_sql, titles_params = _best_hits_sql(**titles)
        rows = _fetch(
            f"SELECT 1, * FROM ({messages_sql}) m UNION ALL SELECT 2, * FROM ({titles_sql}) t",
            messages_params + titles_params,
        )
        hits = _best_per_key(row[1:] for row in rows if row[0] == 1)
        title_hits = _best_per_key(row[1:] for row in rows if row[0] == 2)
    else:
        hits, title_hits = _best_hits(**messages), _best_hits(**titles)
    for thread_id, title in title_hits.items():
        found = hits.setdefault(thread_id, title)
        found["rank"] = max(found["rank"], title["rank"])
    return hits


def _best_hits(
    table: str, column: str, *, key: str, label: str, among: str, ids: list[str], scope: Scope, query: TextQuery
) -> dict[str, SearchHit]:
    """The best match of `table` per `key` (its `label`, rank and snippet), among the rows of the
    workspace whose `among` is one of `ids`; `x` names the table's row."""
    if not ids:
        return {}
    if _postgres():
        sql, params = _best_hits_sql(
            table, column, key=key, label=label, among=among, ids=ids, scope=scope, query=query
        )
    else:
        # bm25() and snippet() work only in a query on the FTS table itself: the best is picked below.
        fts = f"{table}_fts"
        sql = (
            f"SELECT {key}, {label}, -bm25({fts}), snippet({fts}, 0, %s, %s, '', %s) "
            f"FROM {fts} JOIN {table} x ON x.rowid = {fts}.rowid "
            f"WHERE {fts} MATCH %s AND x.workspace_id = %s AND {among} IN ({', '.join(['%s'] * len(ids))})"
        )
        params = [MARK_START, MARK_END, SNIPPET_WORDS, query.fts5, scope.workspace_id, *ids]
    return _best_per_key(_fetch(sql, params))


def _best_hits_sql(
    table: str, column: str, *, key: str, label: str, among: str, ids: list[str], scope: Scope, query: TextQuery
) -> tuple[str, list]:
    """PostgreSQL: the statement behind `_best_hits`, one row (key, label, rank, marked snippet) per key."""
    # The page's rows are read by `among` alone and matched after (OFFSET 0 keeps the match
    # out of the scan: a GIN lookup of a common word or prefix costs more than these few rows).
    # The snippet is built for each key's best row only (ts_headline reads the whole text).
    order = "x.position" if table == "chat_message" else "x.id"
    rows = f"SELECT * FROM {table} x WHERE x.workspace_id = %s AND {among} = ANY(%s) OFFSET 0"
    best = (
        f"SELECT DISTINCT ON ({key}) {key} AS key, {label} AS label, ts_rank(x.search_vector, q.q) AS rank, "
        f"x.search_config, x.{column} AS text FROM ({rows}) x, to_tsquery(%s::regconfig, %s) q(q) "
        f"WHERE x.search_vector @@ q.q ORDER BY {key}, rank DESC, {order}"
    )
    sql = (
        "SELECT key, label, rank, ts_headline(search_config, text, to_tsquery(%s::regconfig, %s), %s) "
        f"FROM ({best}) b"
    )
    return sql, [query.config, query.tsquery, HEADLINE_OPTIONS, scope.workspace_id, ids, query.config, query.tsquery]


def _best_per_key(rows) -> dict[str, SearchHit]:
    hits: dict[str, SearchHit] = {}
    for found_key, found_label, rank, marked in rows:
        if found_key not in hits or rank > hits[found_key]["rank"]:
            hits[found_key] = _hit(found_label, rank, marked)
    return hits


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _hit(message_id: str | None, rank: float, marked: str) -> SearchHit:
    snippet, highlights = split_marks(marked)
    return {"rank": round(float(rank), 6), "snippet": snippet, "highlights": highlights, "message_id": message_id}


def split_marks(marked: str) -> tuple[str, list[list[int]]]:
    """A snippet with match marks → its plain text and the [start, end) offsets of the matches.

    A match runs from a start mark to the first end mark after it; an end mark with no start before
    it, and a match with no text, mark nothing.
    """
    parts: list[str] = []
    highlights: list[list[int]] = []
    length = 0
    for index, piece in enumerate(marked.split(MARK_START)):
        if index and MARK_END in piece:
            inside, _, after = piece.partition(MARK_END)
            if inside:
                highlights.append([length, length + len(inside)])
            piece = inside + after.replace(MARK_END, "")
        elif MARK_END in piece:
            piece = piece.replace(MARK_END, "")
        parts.append(piece)
        length += len(piece)
    return "".join(parts), highlights
