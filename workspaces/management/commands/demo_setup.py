import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from workspaces.keys import parse_key
from workspaces.models import ApiKey, Membership
from workspaces.services import api_key_create, member_ensure, workspace_create

DEMO_SLUG = "demo"
DEMO_EMAIL = "demo@tenex.local"


class Command(BaseCommand):
    help = (
        "Create the demo workspace, member and a personal API key once; later runs print the same "
        "key (kept in TENEX_DATA_DIR/demo_api_key, since only its hash is in the database)."
    )

    def handle(self, **options):
        workspace = workspace_create(slug=DEMO_SLUG, name="Demo workspace")
        user = member_ensure(workspace=workspace, email=DEMO_EMAIL, name="Demo", role=Membership.Role.OWNER)
        self._ensure_web_password(user)
        key_file = Path(settings.DATA_DIR) / "demo_api_key"
        if key_file.exists():
            saved = key_file.read_text().strip()
            parsed = parse_key(saved)
            if parsed and ApiKey.objects.filter(
                prefix=parsed.prefix, workspace=workspace, revoked_at__isnull=True
            ).exists():
                self.stdout.write(saved)
                return
        issued = api_key_create(workspace=workspace, user=user, name="demo")
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(issued.secret + "\n")
        key_file.chmod(0o600)
        self.stdout.write(issued.secret)

    @staticmethod
    def _ensure_web_password(user) -> None:
        """A password for the web UI, kept beside the key (TENEX_DATA_DIR/demo_password)."""
        password_file = Path(settings.DATA_DIR) / "demo_password"
        if password_file.exists() and user.check_password(password_file.read_text().strip()):
            return
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
