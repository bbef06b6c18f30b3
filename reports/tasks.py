"""Celery tasks of the reports app: thin wrappers over reports.services."""
from celery import shared_task

from reports import services


@shared_task(name="reports.send_to_pacs")
def send_to_pacs(transfer_id: int) -> None:
    """Send one queued PacsTransfer (the SEG, the report and the structured report as DICOM) to the PACS."""
    services.pacs_transfer_run(transfer_id=transfer_id)


@shared_task(name="reports.retry_pacs_sends")
def retry_pacs_sends() -> dict:
    """Every minute (beat): send again the transfers whose time to try again has come; fail over dead sends."""
    return services.pacs_retry_due()
