"""RLS for brand versions; on PostgreSQL, a generated tsvector on passages with a GIN index.

The vector weighs the passage text (A) above the document title (C), so a passage that discusses
the query outranks its siblings that only share the document's title. The text search
configuration is fixed ('english'::regconfig) because a generated column must be immutable.
"""

from django.db import migrations

from workspaces.rls import enable_rls

SEARCH_VECTOR_SQL = """
ALTER TABLE knowledge_passage ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english'::regconfig, coalesce(text, '')), 'A')
    || setweight(to_tsvector('english'::regconfig, coalesce(document_title, '')), 'C')
) STORED
"""
SEARCH_INDEX_SQL = "CREATE INDEX knowledge_passage_search ON knowledge_passage USING GIN (search_vector)"


def add_search_vector(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(SEARCH_VECTOR_SQL)
    schema_editor.execute(SEARCH_INDEX_SQL)


def drop_search_vector(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS knowledge_passage_search")
    schema_editor.execute("ALTER TABLE knowledge_passage DROP COLUMN IF EXISTS search_vector")


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0003_brand_versions_passage_title")]

    operations = [
        enable_rls("knowledge_brandprofileversion"),
        migrations.RunPython(add_search_vector, drop_search_vector, elidable=False),
    ]
