from django.core.management.base import BaseCommand, CommandError

from workspaces.models import ApiKey, Workspace


class Command(BaseCommand):
    help = "List a workspace's API keys by prefix (secrets are never stored, so never shown)."

    def add_arguments(self, parser):
        parser.add_argument("workspace_slug")

    def handle(self, workspace_slug, **options):
        workspace = Workspace.objects.filter(slug=workspace_slug).first()
        if workspace is None:
            raise CommandError(f"no workspace with slug {workspace_slug!r}")
        keys = ApiKey.objects.filter(workspace=workspace).select_related("user").order_by("created_at")
        for key in keys:
            state = "revoked" if key.revoked_at else ("expired" if not key.is_usable() else "active")
            owner = key.user.email if key.user else "service"
            last = key.last_used_at.isoformat() if key.last_used_at else "never"
            self.stdout.write(
                f"{key.prefix}\t{key.id}\t{owner}\t{state}\t{','.join(key.scopes)}\tlast used {last}\t{key.name}"
            )
