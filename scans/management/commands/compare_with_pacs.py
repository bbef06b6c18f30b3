"""python manage.py compare_with_pacs (--scan ID ... | --due [--older-than HOURS] [--limit N])

Compares stored DICOM scans with the PACS's copy of their series now, in this process (scans.services.
scan_compare_with_pacs, for each scan's owner), and keeps the outcome with each scan as the page's button does.
``--due``: the scans the periodic recheck would queue (scans.services.pacs_recheck_due: those whose series the PACS
has held, not compared for PACS_RECHECK_HOURS, or ``--older-than`` hours). For an installation that runs its checks
from cron rather than from beat, and for a look at one scan. Prints one line per scan and a summary; exits 2 when
a PACS copy differs, 1 when a comparison could not be made (the PACS failed or does not hold the series).
"""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from reports.pacs import PacsError
from scans.dicom_text import pacs_comparison_matches, pacs_comparison_text
from scans.models import Scan
from scans.services import TRIGGER_COMMAND, PacsImportUnavailable, pacs_recheck_due, scan_compare_with_pacs


class Command(BaseCommand):
    help = "Compare stored DICOM scans with the PACS's copy of their series and record the outcome."

    def add_arguments(self, parser):
        parser.add_argument("--scan", type=int, action="append", default=[], help="a scan ID (repeatable)")
        parser.add_argument("--due", action="store_true",
                            help="the scans due for a recheck (their series held by the PACS, not compared lately)")
        parser.add_argument("--older-than", type=float, default=None, metavar="HOURS",
                            help="with --due: not compared for this many hours (default PACS_RECHECK_HOURS)")
        parser.add_argument("--limit", type=int, default=None, help="with --due: at most this many scans")

    def handle(self, *args, **opts):
        if not settings.PACS_DESTINATION:
            raise CommandError("No PACS is configured (PACS_DESTINATION): there is nothing to compare with.")
        if bool(opts["scan"]) == opts["due"]:
            raise CommandError("Say which scans: --scan ID (repeatable), or --due.")
        if opts["due"]:
            hours = opts["older_than"] if opts["older_than"] is not None else settings.PACS_RECHECK_HOURS
            if not hours or hours < 0:
                raise CommandError("--due needs --older-than HOURS (more than 0) when PACS_RECHECK_HOURS is not set.")
            if opts["limit"] is not None and opts["limit"] < 1:
                raise CommandError("--limit must be at least 1.")
            scans = list(pacs_recheck_due(hours=hours, limit=opts["limit"]))
        else:
            found = {s.pk: s for s in Scan.objects.filter(pk__in=opts["scan"]).select_related("owner")}
            if missing := sorted(set(opts["scan"]) - set(found)):
                raise CommandError(f"No scan with ID {', '.join(map(str, missing))}.")
            if not_dicom := sorted(pk for pk, s in found.items() if s.kind != Scan.Kind.DICOM):
                raise CommandError(f"Scan {', '.join(map(str, not_dicom))} is not DICOM: the PACS holds no copy of it "
                                   "to compare with.")
            scans = [found[pk] for pk in dict.fromkeys(opts["scan"])]
        counts = {"same": 0, "differs": 0, "failed": 0}
        for scan in scans:
            name = f"scan {scan.pk} ({scan.original_name})"
            try:
                comparison = scan_compare_with_pacs(scan=scan, user=scan.owner, trigger=TRIGGER_COMMAND)
            except (PacsError, PacsImportUnavailable) as exc:
                counts["failed"] += 1
                self.stderr.write(f"{name}: not compared: {getattr(exc, 'message', None) or exc}")
                continue
            outcome = "same" if pacs_comparison_matches(comparison) else "differs"
            counts[outcome] += 1
            self.stdout.write(f"{name}: {outcome}: {pacs_comparison_text(comparison)}")
        n = len(scans)
        self.stdout.write(f"{n} scan{'s' if n != 1 else ''}: {counts['same']} the same as in the PACS, "
                          f"{counts['differs']} differing, {counts['failed']} not compared.")
        if counts["differs"]:
            raise CommandError(f"{counts['differs']} scan(s) differ from the PACS's copy (see above).", returncode=2)
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} scan(s) could not be compared (see above).")
