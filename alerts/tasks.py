"""Celery tasks of the alerts app: thin wrappers over alerts.services."""
import smtplib

from celery import shared_task

from alerts import services

RETRY_SECONDS = (30, 120, 600)  # then given up, and audited as alert.failed


@shared_task(bind=True, name="alerts.send", max_retries=len(RETRY_SECONDS))
def send_alert(self, event_id: int, channel: str = services.EMAIL) -> bool:
    """Send the alert of one audit event by one channel; a server that refuses or cannot be reached is tried
    again."""
    try:
        return services.send_alert(event_id, channel)
    except (smtplib.SMTPException, OSError) as exc:
        if self.request.retries >= len(RETRY_SECONDS):
            what = "e-mail" if channel == services.EMAIL else "webhook call"
            services.alert_failed(event_id, f"The alert {what} could not be sent after {self.request.retries + 1} "
                                            f"tries: {exc}", channel=channel)
            return False
        raise self.retry(exc=exc, countdown=RETRY_SECONDS[self.request.retries])
