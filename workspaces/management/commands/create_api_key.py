from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from workspaces.models import Membership, Workspace
from workspaces.services import UnknownScope, api_key_create, member_ensure


class Command(BaseCommand):
    help = (
        "Create an API key for a workspace and print it (shown once). With --user the key is personal "
        "(the member is created if needed); without, it is a service key."
    )

    def add_arguments(self, parser):
        parser.add_argument("workspace_slug")
        parser.add_argument("--user", dest="email", default=None, help="member email for a personal key")
        parser.add_argument("--scopes", default=None, help="comma-separated, e.g. chat:read,chat:write")
        parser.add_argument("--name", default="", help="a label for the key")
        parser.add_argument("--owner", action="store_true", help="make the member an owner of the workspace")

    def handle(self, workspace_slug, email, scopes, name, owner, **options):
        workspace = Workspace.objects.filter(slug=workspace_slug).first()
        if workspace is None:
            raise CommandError(f"no workspace with slug {workspace_slug!r}; create it with create_workspace")
        user = None
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"not an email address: {email!r}") from None
            role = Membership.Role.OWNER if owner else Membership.Role.MEMBER
            user = member_ensure(workspace=workspace, email=email, role=role)
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()] if scopes is not None else None
        try:
            issued = api_key_create(workspace=workspace, user=user, name=name, scopes=scope_list)
        except UnknownScope as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(issued.secret)
