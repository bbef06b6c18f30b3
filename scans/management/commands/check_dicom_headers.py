"""python manage.py check_dicom_headers [--scan ID ...] [--missing]

Runs the DICOM header checks (inference.ml.provenance) again on stored DICOM scans, from their originals, and
records the result with each scan (shown on its page and in its report), with the scan's instances (their UIDs and
pixel digests, which find other stored copies of the same images), and where an altered copy's pixels differ when
that was not recorded yet (copies found before 2026-12-07). ``--missing``: only scans that have no result or no
instances yet (uploaded before the portal made the checks or kept the instances). Prints one line per scan and a
summary.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from inference.ml.imaging import ImagingError
from scans.ingest import UploadRejected
from scans.models import Scan
from scans.services import describe_altered_copies, scan_check_headers


class Command(BaseCommand):
    help = "Run the DICOM header checks again on stored DICOM scans and record the results."

    def add_arguments(self, parser):
        parser.add_argument("--scan", type=int, action="append", default=[], help="a scan ID (repeatable)")
        parser.add_argument("--missing", action="store_true",
                            help="only scans without a header check or without their instances indexed yet")

    def handle(self, *args, **opts):
        scans = Scan.objects.filter(kind=Scan.Kind.DICOM).order_by("pk")
        if opts["scan"]:
            found = set(Scan.objects.filter(pk__in=opts["scan"]).values_list("pk", flat=True))
            if missing := sorted(set(opts["scan"]) - found):
                raise CommandError(f"No scan with ID {', '.join(map(str, missing))}.")
            not_dicom = sorted(Scan.objects.filter(pk__in=opts["scan"]).exclude(kind=Scan.Kind.DICOM)
                               .values_list("pk", flat=True))
            if not_dicom:
                raise CommandError(f"Scan {', '.join(map(str, not_dicom))} is not DICOM: it has no headers to check.")
            scans = scans.filter(pk__in=opts["scan"])
        if opts["missing"]:
            scans = scans.filter(Q(instances__isnull=True) | ~Q(metadata__has_key="header_checks")).distinct()
        counts = {"checked": 0, "warnings": 0, "failed": 0}
        for scan in scans.iterator():
            try:
                checks = scan_check_headers(scan)
            except (ImagingError, UploadRejected, OSError) as exc:  # an original gone or unreadable: say which
                counts["failed"] += 1
                self.stderr.write(f"scan {scan.pk} ({scan.original_name}): not checked: {exc}")
                continue
            counts["checked"] += 1
            counts["warnings"] += checks["status"] == "warnings"
            described = describe_altered_copies(scan)
            where = (f" Recorded where {described} altered cop{'y differs' if described == 1 else 'ies differ'}."
                     if described else "")
            self.stdout.write(f"scan {scan.pk} ({scan.original_name}): {checks['status']}: {checks['message']}{where}")
        self.stdout.write(f"{counts['checked']} scan{'s' if counts['checked'] != 1 else ''} checked, "
                          f"{counts['warnings']} with signs of editing, {counts['failed']} could not be read.")
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} scan(s) could not be checked (see above).")
