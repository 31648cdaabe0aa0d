from django.db import migrations

from workspaces.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [enable_rls("agents_agent", "agents_agentversion")]
