"""Reads of documents, the brand profile and search results; every one starts from a scoped manager."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from django.db.models import QuerySet

from knowledge.models import BrandProfile, Document
from knowledge.search import rank_passages
from workspaces.tenancy import Scope

DOCUMENT_ORDERING = ("-created_at", "-id")


class SearchResult(TypedDict):
    document_id: str
    title: str
    passage: str
    score: float
    source_url: str


def document_list(*, scope: Scope) -> QuerySet[Document]:
    return Document.objects.for_scope(scope).order_by(*DOCUMENT_ORDERING)




def document_search(*, scope: Scope, query: str) -> list[tuple[str, float]]:
    """Ids of the documents matching `query`, best first, each with its best passage's score."""
    best: dict[str, float] = {}
    for hit in rank_passages(scope=scope, query=query):
        best.setdefault(hit.document_id, hit.score)
    return list(best.items())


def passage_search(
    *, scope: Scope, query: str, limit: int, pinned_document_ids: Iterable[str] = ()
) -> list[SearchResult]:
    """The best `limit` passages for `query`, quoted with their document's title and source."""
    hits = rank_passages(scope=scope, query=query, pinned_document_ids=pinned_document_ids)[:limit]
    return [
        {
            "document_id": hit.document_id,
            "title": hit.title,
            "passage": hit.text,
            "score": round(hit.score, 4),
            "source_url": hit.source_url,
        }
        for hit in hits
    ]


def brand_profile_get(*, scope: Scope) -> BrandProfile | None:
    return BrandProfile.objects.for_scope(scope).first()
