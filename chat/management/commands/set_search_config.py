from django.core.management.base import BaseCommand, CommandError

from chat.services import search_config_set
from workspaces.models import SEARCH_CONFIGS, Workspace


class Command(BaseCommand):
    help = (
        "Set a workspace's text search configuration (how thread and message search splits and stems "
        "words on PostgreSQL: simple, english, german, ...) and re-index its threads and messages."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("config", choices=SEARCH_CONFIGS)

    def handle(self, slug, config, **options):
        workspace = Workspace.objects.filter(slug=slug).first()
        if workspace is None:
            raise CommandError(f"no workspace {slug!r}")
        changed = search_config_set(workspace_id=workspace.pk, config=config)
        self.stdout.write(f"{slug}: search_config {config}, {changed} rows re-indexed")
