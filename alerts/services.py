"""Sending the alerts (alerts.rules) from a worker, after the event's transaction commits, by each configured channel:
e-mail to ALERT_EMAILS, and a JSON POST to ALERT_WEBHOOK_URL (a chat channel's incoming webhook, an incident system,
a SIEM).

The audit log records each alert sent (`alert.sent`: which event, what kind, by which channel) and each that could
not be (`alert.failed`, with the reason, after the task's last try): an alert nobody received is visible where the
event is.
"""
from __future__ import annotations

import json
import logging
import urllib.request
from datetime import timezone

from django.conf import settings
from django.db import transaction

from alerts.rules import Alert, alert_for

logger = logging.getLogger(__name__)

EMAIL, WEBHOOK = "email", "webhook"


def channels() -> list[str]:
    """The configured channels (none: alerts are off)."""
    return [c for c, on in ((EMAIL, settings.ALERT_EMAILS), (WEBHOOK, settings.ALERT_WEBHOOK_URL)) if on]


def on_audit_event(sender, instance, created, **kwargs) -> None:
    """post_save of audit.models.AuditEvent: queue the alert of an event that calls for one (a channel configured,
    its kind in ALERT_ON), one task per channel, once the event's transaction commits (a rolled-back event alerts
    nobody)."""
    if not created or not channels():
        return
    alert = alert_for(instance)
    if alert is None or alert.kind not in settings.ALERT_ON:
        return
    for channel in channels():
        transaction.on_commit(lambda channel=channel: _dispatch(instance.pk, alert, channel))


def _dispatch(event_id: int, alert: Alert, channel: str) -> None:
    from alerts.tasks import send_alert

    try:
        send_alert.apply_async((event_id, channel),
                               **({"queue": settings.ALERT_QUEUE} if settings.ALERT_QUEUE else {}))
    except Exception as exc:  # the broker does not answer: say so where the event is
        logger.exception("could not queue the alert of audit event %s", event_id)
        alert_failed(event_id, f"The alert could not be queued (the broker did not answer: {exc}).", alert=alert,
                     channel=channel)


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
             "An alert of the MRI tamper check portal (ALERT_ON). It names no patient: open the scan on the portal "
             "(its access is audited)."]
    return f"{settings.ALERT_SUBJECT_PREFIX}{alert.subject}", "\n".join(body)


def alert_payload(event, alert: Alert) -> dict:
    """The webhook's JSON: `text` for chat tools (Slack, Mattermost, Teams workflows read it), the rest for
    machines. Like the e-mail, it names no patient and no file."""
    subject, body = alert_message(event, alert)
    link = scan_link(alert.scan_id) if alert.scan_id is not None else ""
    return {
        "text": f"{subject}\n{body}", "kind": alert.kind, "subject": alert.subject, "lines": list(alert.lines),
        "scan_id": alert.scan_id, "scan_url": link if settings.PORTAL_URL else "",
        "event": {"seq": event.seq, "action": event.action,
                  "at": event.created_at.astimezone(timezone.utc).isoformat()},
        "source": "mri-tamper-check",
    }


def send_alert(event_id: int, channel: str = EMAIL) -> bool:
    """Send the alert of one audit event by one channel and audit it; False when it calls for none (or the channel
    was turned off since). SMTP, HTTP and network errors propagate (the task tries again)."""
    from django.core.mail import send_mail

    from audit import actions
    from audit.models import AuditEvent
    from audit.services import audit_record

    event = AuditEvent.objects.get(pk=event_id)
    alert = alert_for(event)
    if alert is None or channel not in channels():
        return False
    if channel == EMAIL:
        subject, body = alert_message(event, alert)
        send_mail(subject, body, settings.ALERT_FROM, list(settings.ALERT_EMAILS), fail_silently=False)
        recipients = len(settings.ALERT_EMAILS)
    else:
        _post_json(settings.ALERT_WEBHOOK_URL, alert_payload(event, alert))
        recipients = 1
    audit_record(action=actions.ALERT_SENT, details={
        "event_seq": event.seq, "event_action": event.action, "kind": alert.kind, "channel": channel,
        "recipients": recipients, "scan_id": alert.scan_id})
    return True


def _post_json(url: str, payload: dict) -> None:
    """POST the payload; an answer other than 2xx raises (urllib.error.HTTPError, an OSError)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "mri-tamper-check"})
    with urllib.request.urlopen(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT) as response:
        response.read(65536)


def alert_failed(event_id: int, reason: str, *, alert: Alert | None = None, channel: str = EMAIL) -> None:
    from audit import actions
    from audit.models import AuditEvent
    from audit.services import audit_record

    event = AuditEvent.objects.filter(pk=event_id).first()
    alert = alert or (alert_for(event) if event is not None else None)
    audit_record(action=actions.ALERT_FAILED, outcome=actions.FAILURE, details={
        "event_seq": event.seq if event is not None else None, "event_action": event.action if event else "",
        "kind": alert.kind if alert else "", "channel": channel, "error": reason[:500]})
