"""python manage.py check_pacs [--destination AE@host:port] [--query]

Asks the PACS that "Send to PACS" stores in (settings.PACS_DESTINATION) for a DICOM C-ECHO, calling as
PACS_CALLING_AE (over DICOM TLS with PACS_TLS), and says whether and how fast it answered, or why not (nothing
listens there, it refused this portal's AE title, its certificate is not trusted, ...). With --query, also searches it (a C-FIND for an accession number no study has), as the
import from the PACS does. Exit status 1 when it did not answer or refused: for a hospital engineer setting the
portal up, and for monitoring.
"""
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from reports.pacs import PacsError, echo, find_studies
from reports.services import pacs_connection

PROBE_ACCESSION = "TAMPERCHECK-0"  # an accession number to search for: what matters is that the PACS answers


class Command(BaseCommand):
    help = "C-ECHO the configured PACS (PACS_DESTINATION) and say whether it answers."

    def add_arguments(self, parser):
        parser.add_argument("--destination", default=None, help="AE_TITLE@host:port (default: PACS_DESTINATION)")
        parser.add_argument("--query", action="store_true",
                            help="also search the PACS (C-FIND), as the import from the PACS does")

    def handle(self, *args, **opts):
        try:
            destination = pacs_connection(opts["destination"] or None)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except PacsError as exc:
            raise CommandError(exc.message) from exc
        if destination is None:
            raise CommandError("No PACS is configured: set PACS_DESTINATION=AE_TITLE@host:port (or pass --destination).")
        calling, timeout = settings.PACS_CALLING_AE, settings.PACS_TIMEOUT_SECONDS
        try:
            seconds = echo(destination, calling_ae=calling, timeout=timeout)
        except PacsError as exc:
            raise CommandError(exc.message) from exc
        over = " over DICOM TLS" if destination.tls is not None else ""
        self.stdout.write(f"The PACS {destination} answered a C-ECHO from {calling}{over} in {seconds * 1000:.0f} ms.")
        if not opts["query"]:
            return
        started = time.perf_counter()
        try:
            find_studies(destination, accession_number=PROBE_ACCESSION, calling_ae=calling, timeout=timeout)
        except PacsError as exc:
            raise CommandError(f"{exc.message} The import from the PACS needs it to let {calling} search (C-FIND) "
                               "and retrieve (C-GET).") from exc
        self.stdout.write(f"It answered a search (C-FIND) in {(time.perf_counter() - started) * 1000:.0f} ms: the "
                          "import from the PACS can search it.")
