"""Create the first portal admin when there are no users at all (used by `make run`).

ADMIN_USERNAME (default "admin") and ADMIN_PASSWORD choose the account; without ADMIN_PASSWORD a random
password is generated and printed once. Does nothing when any user exists.
"""
import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import User


class Command(BaseCommand):
    help = "Create the first admin if the database has no users (ADMIN_USERNAME, ADMIN_PASSWORD)."

    def handle(self, *args, **options):
        if User.objects.exists():
            self.stdout.write("Users exist; no admin created. New accounts: log in as an admin, open Users.")
            return
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD") or ""
        generated = not password
        if generated:
            password = services.generate_password()
        try:
            services.user_create(actor=None, username=username, password=password, role=User.Role.ADMIN)
        except ValidationError as error:
            raise CommandError(f"Cannot create the first admin “{username}”: {' '.join(error.messages)}") from error
        if generated:
            self.stdout.write(self.style.WARNING(
                f"\n  First admin created.  username: {username}   password: {password}\n"
                "  This password is shown once; change it after logging in (Account > Change password).\n"
            ))
        else:
            self.stdout.write(self.style.SUCCESS(f"First admin “{username}” created with ADMIN_PASSWORD."))
