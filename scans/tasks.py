"""Celery tasks of the scans app: thin wrappers over scans.services."""
from celery import shared_task

from scans import services


@shared_task(name="scans.compare_with_pacs")
def compare_with_pacs(scan_id: int) -> None:
    """Compare an uploaded DICOM scan with the PACS's copy of its series (PACS_COMPARE_UPLOADS)."""
    services.compare_after_upload(scan_id)
