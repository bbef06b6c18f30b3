"""Sending the alerts (alerts.rules) by e-mail to ALERT_EMAILS, from a worker, after the event's transaction commits.

The audit log records each e-mail sent (`alert.sent`: which event, what kind, to how many addresses) and each
that could not be (`alert.failed`, with the reason, after the task's last try): an alert nobody received is
visible where the event is.
"""
from __future__ import annotations

import logging
from datetime import timezone

from django.conf import settings
from django.db import transaction

from alerts.rules import Alert, alert_for

logger = logging.getLogger(__name__)


def on_audit_event(sender, instance, created, **kwargs) -> None:
    """post_save of audit.models.AuditEvent: queue the e-mail of an event that calls for one (ALERT_EMAILS set, its
    kind in ALERT_ON), once the event's transaction commits (a rolled-back event alerts nobody)."""
    if not created or not settings.ALERT_EMAILS:
        return
    alert = alert_for(instance)
    if alert is None or alert.kind not in settings.ALERT_ON:
        return
    transaction.on_commit(lambda: _dispatch(instance.pk, alert))


def _dispatch(event_id: int, alert: Alert) -> None:
    from alerts.tasks import send_alert

    try:
        send_alert.apply_async((event_id,), **({"queue": settings.ALERT_QUEUE} if settings.ALERT_QUEUE else {}))
    except Exception as exc:  # the broker does not answer: say so where the event is
        logger.exception("could not queue the alert of audit event %s", event_id)
        alert_failed(event_id, f"The alert could not be queued (the broker did not answer: {exc}).", alert=alert)


def scan_link(scan_id: int | None) -> str:
    """The scan page's address: absolute with PORTAL_URL, else its path on the portal."""
    from django.urls import reverse

    if scan_id is None:
        return ""
    path = reverse("scans:detail", args=[scan_id])
    return f"{settings.PORTAL_URL.rstrip('/')}{path}" if settings.PORTAL_URL else f"{path} on the portal"


def alert_message(event, alert: Alert) -> tuple[str, str]:
    """The e-mail (subject, body) of an audit event's alert."""
    at = event.created_at.astimezone(timezone.utc)
    body = [*alert.lines, ""]
    if alert.scan_id is not None:
        body.append(f"Scan: {scan_link(alert.scan_id)}")
    body += [f"Audit event #{event.seq} ({event.action}), {at:%Y-%m-%d %H:%M:%S} UTC.", "",
             "Sent by the MRI tamper check portal to ALERT_EMAILS. It names no patient: open the scan on the portal "
             "(its access is audited)."]
    return f"{settings.ALERT_SUBJECT_PREFIX}{alert.subject}", "\n".join(body)


def send_alert(event_id: int) -> bool:
    """E-mail the alert of one audit event to ALERT_EMAILS (Django's mail backend, EMAIL_URL) and audit it; False
    when it calls for none (or alerts were turned off since). SMTP and network errors propagate (the task tries
    again)."""
    from django.core.mail import send_mail

    from audit import actions
    from audit.models import AuditEvent
    from audit.services import audit_record

    event = AuditEvent.objects.get(pk=event_id)
    alert = alert_for(event)
    if alert is None or not settings.ALERT_EMAILS:
        return False
    subject, body = alert_message(event, alert)
    send_mail(subject, body, settings.ALERT_FROM, list(settings.ALERT_EMAILS), fail_silently=False)
    audit_record(action=actions.ALERT_SENT, details={
        "event_seq": event.seq, "event_action": event.action, "kind": alert.kind,
        "recipients": len(settings.ALERT_EMAILS), "scan_id": alert.scan_id})
    return True


def alert_failed(event_id: int, reason: str, *, alert: Alert | None = None) -> None:
    from audit import actions
    from audit.models import AuditEvent
    from audit.services import audit_record

    event = AuditEvent.objects.filter(pk=event_id).first()
    alert = alert or (alert_for(event) if event is not None else None)
    audit_record(action=actions.ALERT_FAILED, outcome=actions.FAILURE, details={
        "event_seq": event.seq if event is not None else None, "event_action": event.action if event else "",
        "kind": alert.kind if alert else "", "error": reason[:500]})
