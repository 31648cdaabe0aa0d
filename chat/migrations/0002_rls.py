from django.db import migrations

from workspaces.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]

    operations = [
        enable_rls("chat_thread", "chat_message", "chat_attachment", "chat_file", "chat_idempotencyrecord"),
    ]
