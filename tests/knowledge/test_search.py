"""Passages and ranked search: the right passage first, quoted on its own, one workspace only."""

from __future__ import annotations

import pytest

from knowledge import search, services
from knowledge.models import Document
from knowledge.search import PASSAGE_MAX_CHARS, split_passages
from knowledge.selectors import passage_search
from tests.knowledge.factories import DocumentFactory, workspace_scope
from workspaces.tenancy import tenant_context

pytestmark = pytest.mark.django_db

FILLER = (
    "Our quarterly planning cycle aligns every team around a small number of goals. "
    "Teams review progress each month and adjust their plans where needed. "
)


def long_handbook(pages: int = 50) -> str:
    """A long document: many filler paragraphs, one of them about the parental leave policy."""
    paragraphs = [f"Section {i}. " + FILLER * 4 for i in range(pages * 3)]
    paragraphs[97] = (
        "## Parental leave\n\nEvery employee gets sixteen weeks of fully paid parental leave, "
        "which can be split into two blocks within the first year."
    )
    return "\n\n".join(paragraphs)


def search_in(workspace, query, **kwargs):
    with tenant_context(workspace.pk):
        return passage_search(scope=workspace_scope(workspace.pk), query=query, limit=kwargs.pop("limit", 5), **kwargs)


def test_split_passages_are_bounded_and_cover_the_text():
    body = long_handbook()
    passages = split_passages(body)
    assert len(passages) > 50
    assert all(0 < len(p) <= PASSAGE_MAX_CHARS for p in passages)
    assert "".join(body.split()) == "".join("".join(passages).split())  # nothing lost, only re-spaced


def test_short_paragraphs_merge_and_a_heading_stays_with_its_paragraph():
    assert split_passages("One.\n\nTwo.\r\n\r\nThree.") == ["One.\n\nTwo.\n\nThree."]
    passages = split_passages("Intro " * 100 + "\n\n# Pricing\n\n" + "Plans cost money. " * 20)
    assert passages[1].startswith("# Pricing\n\nPlans cost money.")


def test_one_endless_word_is_cut_into_bounded_passages():
    passages = split_passages("x" * 5000)
    assert [len(p) for p in passages] == [1500, 1500, 1500, 500]


def test_search_quotes_the_matching_passage_not_the_whole_document(workspace):
    handbook = DocumentFactory(workspace=workspace, title="Employee handbook", body=long_handbook(),
                               source_url="https://acme.test/handbook")
    results = search_in(workspace, "how much parental leave do employees get?")
    top = results[0]
    assert top["document_id"] == handbook.pk
    assert top["title"] == "Employee handbook" and top["source_url"] == "https://acme.test/handbook"
    assert "sixteen weeks of fully paid parental leave" in top["passage"]
    assert len(top["passage"]) <= PASSAGE_MAX_CHARS < len(handbook.body) // 50
    assert isinstance(top["score"], float) and top["score"] > 0


def test_passages_with_every_word_rank_above_passages_with_some(workspace):
    some = DocumentFactory(workspace=workspace, title="Refunds", body="Refunds take five days. " * 5)
    every = DocumentFactory(workspace=workspace, title="Enterprise", body="Enterprise customers get refunds in 9 days.")
    unrelated = DocumentFactory(workspace=workspace, title="Hiring", body="We hire engineers.")
    ids = [r["document_id"] for r in search_in(workspace, "enterprise refunds")]
    assert ids == [every.pk, some.pk]
    assert unrelated.pk not in ids


def test_stemming_and_case(workspace):
    document = DocumentFactory(workspace=workspace, body="Our POLICY on travel: book economy.")
    assert [r["document_id"] for r in search_in(workspace, "travel policies")] == [document.pk]


def test_search_syntax_is_honoured(workspace):
    remote = DocumentFactory(workspace=workspace, body="Remote work is allowed on Fridays.")
    office = DocumentFactory(workspace=workspace, body="Office work starts at nine.")
    assert [r["document_id"] for r in search_in(workspace, "work -remote")] == [office.pk]
    assert [r["document_id"] for r in search_in(workspace, '"remote work"')] == [remote.pk]


def test_limit_and_pinned_documents_come_first(workspace):
    docs = [DocumentFactory(workspace=workspace, body=f"Discount rules, edition {i}.") for i in range(4)]
    assert len(search_in(workspace, "discount", limit=2)) == 2
    pinned = docs[2].pk
    results = search_in(workspace, "discount", pinned_document_ids=[pinned])
    assert results[0]["document_id"] == pinned and len(results) == 4


def test_search_never_crosses_workspaces(workspace, other_workspace):
    DocumentFactory(workspace=other_workspace, body="Globex secret pricing: 42 dollars.")
    mine = DocumentFactory(workspace=workspace, body="Acme pricing: 10 dollars.")
    assert [r["document_id"] for r in search_in(workspace, "secret pricing")] == [mine.pk]
    assert search_in(workspace, "globex") == []


def test_edits_are_searchable_and_deleted_documents_are_not(workspace):
    document = DocumentFactory(workspace=workspace, body="The old tagline.")
    scope = workspace_scope(workspace.pk)
    with tenant_context(workspace.pk):
        services.document_update(scope=scope, document=document, changes={"body": "A brand new slogan."})
    assert search_in(workspace, "tagline") == []
    assert [r["passage"] for r in search_in(workspace, "slogan")] == ["A brand new slogan."]
    with tenant_context(workspace.pk):
        services.document_delete(scope=scope, document=Document.objects.get(pk=document.pk))
    assert search_in(workspace, "slogan") == []


def test_a_title_match_alone_finds_the_document_but_ranks_below_text_matches(workspace):
    titled = DocumentFactory(workspace=workspace, title="Security", body="Contact the team lead.")
    text = DocumentFactory(workspace=workspace, title="Misc", body="Security reviews happen yearly.")
    assert [r["document_id"] for r in search_in(workspace, "security")] == [text.pk, titled.pk]


def test_the_portable_term_overlap_ranking_agrees(workspace):
    """The fallback used off PostgreSQL (called directly here; it is plain ORM)."""
    some = DocumentFactory(workspace=workspace, body="Refunds take five days.")
    every = DocumentFactory(workspace=workspace, body="Enterprise customers get refunds in 60 days.")
    excluded = DocumentFactory(workspace=workspace, body="Enterprise refunds for resellers.")
    DocumentFactory(workspace=workspace, body="Nothing here.")
    with tenant_context(workspace.pk):
        hits = search._rank_term_overlap(workspace_scope(workspace.pk), "enterprise refunds for customers")
        hits.sort(key=lambda h: (not h.complete, -h.score))
        assert [h.document_id for h in hits][:1] == [every.pk]
        assert {h.document_id for h in hits} == {some.pk, every.pk, excluded.pk}
        negated = search._rank_term_overlap(workspace_scope(workspace.pk), "refunds -resellers")
        assert {h.document_id for h in negated} == {some.pk, every.pk}
        assert search._rank_term_overlap(workspace_scope(workspace.pk), "the of and") == []
