from django.db import migrations

from workspaces.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0001_initial")]

    operations = [enable_rls("knowledge_document", "knowledge_passage", "knowledge_brandprofile")]
