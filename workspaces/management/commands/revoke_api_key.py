from django.core.management.base import BaseCommand, CommandError

from workspaces.services import api_key_find, api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key, given the key itself or its prefix (tnx_XXXXXXXX)."

    def add_arguments(self, parser):
        parser.add_argument("key_or_prefix")

    def handle(self, key_or_prefix, **options):
        api_key = api_key_find(key_or_prefix)
        if api_key is None:
            raise CommandError("no API key with that key or prefix")
        api_key_revoke(api_key=api_key)
        self.stdout.write(f"revoked {api_key.prefix}")
