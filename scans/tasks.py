"""Celery tasks of the scans app: thin wrappers over scans.services."""
from celery import shared_task

from scans import services


@shared_task(name="scans.compare_with_pacs")
def compare_with_pacs(scan_id: int, trigger: str = services.TRIGGER_UPLOAD) -> None:
    """Compare a DICOM scan with the PACS's copy of its series (after the upload, PACS_COMPARE_UPLOADS; or the
    periodic recheck, PACS_RECHECK_HOURS)."""
    services.compare_queued(scan_id, trigger)


@shared_task(name="scans.recheck_pacs_copies")
def recheck_pacs_copies() -> int:
    """Beat: queue the comparisons that are due again (PACS_RECHECK_HOURS; nothing when it is 0)."""
    return services.pacs_recheck_queue()
