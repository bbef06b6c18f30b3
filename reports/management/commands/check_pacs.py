"""python manage.py check_pacs [--destination AE@host:port]

Asks the PACS that "Send to PACS" stores in (settings.PACS_DESTINATION) for a DICOM C-ECHO, calling as
PACS_CALLING_AE, and says whether and how fast it answered, or why not (nothing listens there, it refused this
portal's AE title, ...). Exit status 1 when it did not answer: for a hospital engineer setting the portal up, and
for monitoring.
"""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from reports.pacs import PacsSendFailed, echo, parse_destination


class Command(BaseCommand):
    help = "C-ECHO the configured PACS (PACS_DESTINATION) and say whether it answers."

    def add_arguments(self, parser):
        parser.add_argument("--destination", default=None, help="AE_TITLE@host:port (default: PACS_DESTINATION)")

    def handle(self, *args, **opts):
        try:
            destination = parse_destination(opts["destination"] or settings.PACS_DESTINATION)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if destination is None:
            raise CommandError("No PACS is configured: set PACS_DESTINATION=AE_TITLE@host:port (or pass --destination).")
        try:
            seconds = echo(destination, calling_ae=settings.PACS_CALLING_AE, timeout=settings.PACS_TIMEOUT_SECONDS)
        except PacsSendFailed as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"The PACS {destination} answered a C-ECHO from {settings.PACS_CALLING_AE} in "
                          f"{seconds * 1000:.0f} ms.")
