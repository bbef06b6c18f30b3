"""E-mail alerts through a real SMTP server (aiosmtpd, on this machine): an event that is evidence of tampering
reaches ALERT_EMAILS with a link to the scan and no patient's name; the audit log records the e-mail; alerts that
are off send nothing; an SMTP server that cannot be reached is tried again, then the failure is audited."""
import email
import uuid
from email.policy import default as default_policy

import pytest
import redis
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings

from alerts import services
from alerts.tasks import send_alert
from audit import actions
from audit.models import AuditEvent
from audit.services import audit_record
from scans.services import scan_upload
from tests.reports.orthanc import free_port
from tests.scans.scanfiles import brainix_flair_upload


class _Inbox:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self):
        return [email.message_from_bytes(e.content, policy=default_policy) for e in self.envelopes]


@pytest.fixture
def queues(settings):
    """The tasks an upload queues go to queues of this test's own, emptied afterwards (no worker takes them)."""
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    settings.ALERT_QUEUE, settings.INFERENCE_QUEUE = (f"test-{name}-{uuid.uuid4().hex}" for name in ("alerts", "jobs"))
    yield broker
    broker.delete(settings.ALERT_QUEUE, settings.INFERENCE_QUEUE)


@pytest.fixture
def smtp(settings, queues):
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = "127.0.0.1", port, False, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.ALERT_EMAILS = ["security@hospital.example", "pacs-admin@hospital.example"]
    settings.ALERT_FROM = "tampercheck@hospital.example"
    settings.PORTAL_URL = "https://tampercheck.hospital.example/"
    yield inbox
    controller.stop()


def _upload_copies(user):
    original = scan_upload(user=user, files=brainix_flair_upload((9, 10, 11))).scan
    altered = scan_upload(user=user, files=brainix_flair_upload((9, 10, 11), paint=1)).scan
    return original, altered


def test_an_altered_copy_is_e_mailed_to_the_alert_addresses(doctor_a, smtp, queues, settings,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        original, altered = _upload_copies(doctor_a)
    assert queues.llen(settings.ALERT_QUEUE) == 1  # one alert queued, after the upload committed
    assert b"alerts.send" in queues.lindex(settings.ALERT_QUEUE, 0)
    event = AuditEvent.objects.get(action=actions.SCAN_ALTERED_COPY_FOUND)

    assert services.send_alert(event.pk) is True  # the worker's work
    (envelope,), (message,) = smtp.envelopes, smtp.messages()
    assert envelope.rcpt_tos == ["security@hospital.example", "pacs-admin@hospital.example"]
    assert message["From"] == "tampercheck@hospital.example"
    assert message["Subject"] == f"[MRI tamper check] Another stored copy of scan #{altered.pk}'s images has other pixels"
    body = message.get_content()
    assert f"Scan #{original.pk} holds 3 of the same DICOM instances; slice " in body
    assert f" of scan #{altered.pk} differs from it." in body
    assert ": 400 pixels differ (" in body and "within x 100-119, y 100-119" in body  # where
    assert f"Scan: https://tampercheck.hospital.example/scans/{altered.pk}/" in body
    assert f"Audit event #{event.seq} (scan.altered_copy_found)" in body
    assert "IM-0001" not in body and "BRAINIX" not in body  # no file name, no patient
    sent = AuditEvent.objects.get(action=actions.ALERT_SENT)
    assert (sent.details["event_seq"], sent.details["kind"], sent.details["channel"], sent.details["recipients"],
            sent.details["scan_id"]) == (event.seq, "altered_copy", "email", 2, altered.pk)
    assert services.send_alert(sent.pk) is False  # an alert.sent event calls for no alert


def test_the_admin_dashboard_says_where_alerts_go_and_counts_them(client_admin, client_a, doctor_a, smtp, settings):
    from django.urls import reverse

    scan = scan_upload(user=doctor_a, files=brainix_flair_upload((9, 10))).scan
    event = audit_record(action=actions.PACS_COPY_CHANGED, obj=scan, details={"altered_slices": [1]})
    services.send_alert(event.pk)
    services.alert_failed(event.pk, "The alert e-mail could not be sent after 4 tries: Connection refused")
    html = client_admin.get(reverse("reports:dashboard")).content.decode()
    assert "To 2 addresses (ALERT_EMAILS), on: pacs_changed, pacs_differs, altered_copy." in html
    assert ">1 sent</a>" in html and ">1 could not be sent</a>" in html
    assert "data-alerts" not in client_a.get(reverse("reports:dashboard")).content.decode()  # admins only
    settings.ALERT_EMAILS = []
    assert "Off: nowhere to send them" in client_admin.get(reverse("reports:dashboard")).content.decode()


def test_alerts_that_are_off_or_not_asked_for_send_nothing(doctor_a, smtp, queues, settings,
                                                           django_capture_on_commit_callbacks):
    settings.ALERT_ON = ["pacs_changed", "pacs_differs"]
    with django_capture_on_commit_callbacks(execute=True):
        _upload_copies(doctor_a)
    settings.ALERT_EMAILS = []
    with django_capture_on_commit_callbacks(execute=True):
        scan_upload(user=doctor_a, files=brainix_flair_upload((9, 10, 11), paint=2))
    assert queues.llen(settings.ALERT_QUEUE) == 0
    event = AuditEvent.objects.filter(action=actions.SCAN_ALTERED_COPY_FOUND).first()
    assert services.send_alert(event.pk) is False and smtp.envelopes == []


def test_an_smtp_server_that_cannot_be_reached_is_tried_again_then_the_failure_is_audited(doctor_a, queues,
                                                                                         settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 3
    settings.ALERT_EMAILS, settings.PORTAL_URL = ["security@hospital.example"], ""
    scan = scan_upload(user=doctor_a, files=brainix_flair_upload((9, 10))).scan
    event = audit_record(action=actions.PACS_COPY_CHANGED, obj=scan, details={
        "destination": "ORTHANC@pacs:4242", "altered_slices": [1], "missing_slices": [],
        "previous_altered_slices": [], "previous_missing_slices": [], "previous_at": "2026-12-06T23:00:00+00:00"})
    subject, body = services.alert_message(event, services.alert_for(event))
    assert f"Scan: /scans/{scan.pk}/ on the portal" in body  # without PORTAL_URL, the path

    assert send_alert.apply(args=(event.pk,)).get() is False  # every try refused (tries run at once here)
    failed = AuditEvent.objects.get(action=actions.ALERT_FAILED)
    assert (failed.outcome, failed.details["event_seq"], failed.details["kind"]) == ("failure", event.seq,
                                                                                     "pacs_changed")
    assert failed.details["error"].startswith("The alert e-mail could not be sent after 4 tries: ")
    assert not AuditEvent.objects.filter(action=actions.ALERT_SENT).exists()


def test_a_tampering_verdict_alerts_only_when_asked_for(doctor_a, smtp, queues, settings,
                                                        django_capture_on_commit_callbacks):
    scan = scan_upload(user=doctor_a, files=brainix_flair_upload((9, 10))).scan
    job = scan.jobs.get()

    def finished():  # as inference.services records a finished job
        with django_capture_on_commit_callbacks(execute=True):
            return audit_record(action=actions.JOB_SUCCEEDED, obj=job, details={
                "scan_id": scan.pk, "job_id": job.pk, "verdict": "fake_added", "confidence": 0.91,
                "model": "mri-tamper-maskrcnn-r18 0.9.0"})

    finished()
    assert queues.llen(settings.ALERT_QUEUE) == 0  # off by default: the detector has false alarms
    settings.ALERT_ON = [*settings.ALERT_ON, "tampered_verdict"]
    event = finished()
    assert queues.llen(settings.ALERT_QUEUE) == 1
    assert services.send_alert(event.pk) is True
    (message,) = smtp.messages()
    assert message["Subject"] == f"[MRI tamper check] The detector read scan #{scan.pk} as tampered"
    assert "Verdict: Fake: tumor added (confidence 91 %), by mri-tamper-maskrcnn-r18 0.9.0." in message.get_content()



class _Hook:
    """A real HTTP server on this machine that takes webhook POSTs (answering `status`)."""

    def __init__(self, status=204):
        import http.server
        import threading

        hook = self
        self.bodies, self.status = [], status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                hook.bodies.append((self.headers["Content-Type"],
                                    self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tamper"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_alerts_also_go_to_a_webhook_as_json(doctor_a, smtp, queues, settings, django_capture_on_commit_callbacks):
    import json

    hook = _Hook()
    settings.ALERT_WEBHOOK_URL = hook.url
    try:
        with django_capture_on_commit_callbacks(execute=True):
            original, altered = _upload_copies(doctor_a)
        assert queues.llen(settings.ALERT_QUEUE) == 2  # one task per channel
        event = AuditEvent.objects.get(action=actions.SCAN_ALTERED_COPY_FOUND)
        assert services.send_alert(event.pk, "webhook") is True
        ((content_type, raw),) = hook.bodies
        payload = json.loads(raw)
        assert content_type == "application/json" and smtp.envelopes == []  # the e-mail is the other task's
        assert (payload["kind"], payload["scan_id"], payload["event"]["seq"], payload["event"]["action"]) == (
            "altered_copy", altered.pk, event.seq, "scan.altered_copy_found")
        assert payload["scan_url"] == f"https://tampercheck.hospital.example/scans/{altered.pk}/"
        assert payload["text"].startswith(f"[MRI tamper check] Another stored copy of scan #{altered.pk}'s images")
        assert "IM-0001" not in raw.decode() and "BRAINIX" not in raw.decode()
        sent = AuditEvent.objects.get(action=actions.ALERT_SENT)
        assert (sent.details["channel"], sent.details["recipients"]) == ("webhook", 1)

        hook.status = 500  # the receiving end fails: tried again, then the failure is audited
        assert send_alert.apply(args=(event.pk, "webhook")).get() is False
        failed = AuditEvent.objects.get(action=actions.ALERT_FAILED)
        assert failed.details["channel"] == "webhook"
        assert failed.details["error"].startswith("The alert webhook call could not be sent after 4 tries: HTTP Error "
                                                  "500")
        assert len(hook.bodies) == 5
    finally:
        hook.close()
