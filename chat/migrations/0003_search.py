"""Full-text search over thread titles and message text (see chat/search.py).

PostgreSQL: each row carries the text search configuration of its workspace (`search_config`,
set by a BEFORE INSERT trigger from `workspaces_workspace.search_config`) and a generated,
GIN-indexed `search_vector` built with it; a generated column must be immutable, and
`to_tsvector(regconfig, text)` is, so the configuration travels with the row.

SQLite (the embedded default): FTS5 tables keyed by the base table's rowid, kept current by
triggers, tokenized with unicode61 (diacritics folded, no stemming).

Neither column nor table is a model field: Django never reads or writes them directly.
"""

from django.db import migrations

POSTGRES_FORWARD = [
    """
    CREATE FUNCTION chat_row_search_config() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT w.search_config::regconfig INTO NEW.search_config
        FROM workspaces_workspace w WHERE w.id = NEW.workspace_id;
        IF NEW.search_config IS NULL THEN
            NEW.search_config := 'simple'::regconfig;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "ALTER TABLE chat_thread ADD COLUMN search_config regconfig NOT NULL DEFAULT 'simple'::regconfig",
    """ALTER TABLE chat_thread ADD COLUMN search_vector tsvector
       GENERATED ALWAYS AS (to_tsvector(search_config, title)) STORED""",
    "CREATE INDEX chat_thread_search ON chat_thread USING GIN (search_vector)",
    """CREATE TRIGGER chat_thread_search_config BEFORE INSERT ON chat_thread
       FOR EACH ROW EXECUTE FUNCTION chat_row_search_config()""",
    "ALTER TABLE chat_message ADD COLUMN search_config regconfig NOT NULL DEFAULT 'simple'::regconfig",
    """ALTER TABLE chat_message ADD COLUMN search_vector tsvector
       GENERATED ALWAYS AS (to_tsvector(search_config, content)) STORED""",
    "CREATE INDEX chat_message_search ON chat_message USING GIN (search_vector)",
    """CREATE TRIGGER chat_message_search_config BEFORE INSERT ON chat_message
       FOR EACH ROW EXECUTE FUNCTION chat_row_search_config()""",
]

POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS chat_message_search_config ON chat_message",
    "DROP INDEX IF EXISTS chat_message_search",
    "ALTER TABLE chat_message DROP COLUMN IF EXISTS search_vector",
    "ALTER TABLE chat_message DROP COLUMN IF EXISTS search_config",
    "DROP TRIGGER IF EXISTS chat_thread_search_config ON chat_thread",
    "DROP INDEX IF EXISTS chat_thread_search",
    "ALTER TABLE chat_thread DROP COLUMN IF EXISTS search_vector",
    "ALTER TABLE chat_thread DROP COLUMN IF EXISTS search_config",
    "DROP FUNCTION IF EXISTS chat_row_search_config()",
]


def _sqlite_fts(table: str, column: str) -> list[str]:
    fts = f"{table}_fts"
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, tokenize = 'unicode61 remove_diacritics 2')",
        f"INSERT INTO {fts} (rowid, {column}) SELECT rowid, {column} FROM {table}",
        f"""CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN
            INSERT INTO {fts} (rowid, {column}) VALUES (new.rowid, new.{column});
        END""",
        f"""CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN
            DELETE FROM {fts} WHERE rowid = old.rowid;
        END""",
        f"""CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table} BEGIN
            DELETE FROM {fts} WHERE rowid = old.rowid;
            INSERT INTO {fts} (rowid, {column}) VALUES (new.rowid, new.{column});
        END""",
    ]


SQLITE_FORWARD = _sqlite_fts("chat_thread", "title") + _sqlite_fts("chat_message", "content")
SQLITE_BACKWARD = [
    f"DROP {kind} IF EXISTS {table}_fts{suffix}"
    for table in ("chat_thread", "chat_message")
    for kind, suffix in (("TRIGGER", "_insert"), ("TRIGGER", "_delete"), ("TRIGGER", "_update"), ("TABLE", ""))
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_rls"), ("workspaces", "0002_workspace_search_config")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD}),
            elidable=False,
        ),
    ]
