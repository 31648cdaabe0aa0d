"""`python manage.py cleanup_files [--hours 24]`: remove uploads never attached to a message."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from chat.files import UNATTACHED_FILE_TTL, files_cleanup


class Command(BaseCommand):
    help = "Remove uploaded files never attached to a message after --hours (default 24), stored bytes too."

    def add_arguments(self, parser):
        parser.add_argument(
            "--hours",
            type=float,
            default=UNATTACHED_FILE_TTL.total_seconds() / 3600,
            help="Age after which an unattached file is removed (default 24).",
        )

    def handle(self, *args, hours: float, **options):
        if not hours >= 0:
            raise CommandError("--hours must be a non-negative number.")
        removed = files_cleanup(older_than=timedelta(hours=hours))
        # The last line is the machine-read output: how many files were removed.
        self.stdout.write(str(removed))
