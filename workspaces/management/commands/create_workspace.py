from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from workspaces.services import workspace_create


class Command(BaseCommand):
    help = "Create a workspace (or return the existing one with that slug); prints its id."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default=None)

    def handle(self, slug, name, **options):
        if slugify(slug) != slug:
            raise CommandError(f"slug must be lowercase letters, digits and dashes, e.g. {slugify(slug) or 'acme'!r}")
        workspace = workspace_create(slug=slug, name=name)
        self.stdout.write(workspace.id)
