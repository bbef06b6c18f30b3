import csv
import io

import pytest
from django.urls import reverse

from audit import actions
from audit.models import AuditEvent
from audit.services import audit_record


@pytest.fixture
def scan(doctor_a):
    from scans.models import Scan

    return Scan.objects.create(owner=doctor_a, kind="image", original_name="brain.png", sha256="c" * 64,
                               size_bytes=1000, n_slices=1, width=64, height=64, pixel_dtype="uint8")


def _admin_pages(scan_pk):
    return [reverse("audit:list"), reverse("audit:export"), reverse("audit:verify"),
            reverse("audit:scan_history", args=[scan_pk]), reverse("api-audit-events")]


def test_doctors_never_reach_audit_pages(client_a, scan):
    for url in _admin_pages(scan.pk):
        assert client_a.get(url).status_code == 403, url
    # The doctor's own scan makes no difference, and nothing was logged as viewed or exported...
    assert not AuditEvent.objects.filter(action__in=[actions.AUDIT_LOG_VIEWED, actions.AUDIT_LOG_EXPORTED,
                                                     actions.SCAN_HISTORY_VIEWED]).exists()
    # ...but each attempt was, once.
    denied = AuditEvent.objects.filter(action=actions.ACCESS_DENIED).order_by("seq")
    assert [(e.actor_username, e.outcome, e.details["path"]) for e in denied] == [
        ("doctor_a", "denied", url) for url in _admin_pages(scan.pk)]


def test_anonymous_is_sent_to_log_in(client, scan):
    response = client.get(reverse("audit:list"))
    assert response.status_code == 302 and reverse("accounts:login") in response["Location"]


def test_admin_sees_the_log_and_the_view_is_logged(client_admin, doctor_a):
    audit_record(action=actions.SCAN_UPLOADED, actor=doctor_a, details={"name": "brain.png"})
    response = client_admin.get(reverse("audit:list"))
    assert response.status_code == 200
    assert b"Scan uploaded" in response.content and b"doctor_a" in response.content
    viewed = AuditEvent.objects.filter(action=actions.AUDIT_LOG_VIEWED)
    assert viewed.count() == 1 and viewed.get().actor_username == "admin_1"


def test_the_log_tells_the_portals_own_actions_from_anonymous_requests(client_admin, rf):
    audit_record(action=actions.JOB_STARTED, details={"job_id": 7})  # a worker: no user, no request
    failed = rf.post("/accounts/login/", REMOTE_ADDR="203.0.113.9")
    from django.contrib.auth.models import AnonymousUser

    failed.user = AnonymousUser()
    audit_record(action=actions.LOGIN_FAILED, request=failed, outcome=actions.FAILURE)
    events = {e.action: e for e in AuditEvent.objects.all()}
    assert events[actions.JOB_STARTED].actor_display == "system"
    assert events[actions.LOGIN_FAILED].actor_display == "anonymous"
    assert str(events[actions.JOB_STARTED]).endswith("by system (success)")
    page = client_admin.get(reverse("audit:list")).content.decode()
    assert ">system</span>" in page and ">anonymous</span>" in page


def test_filters_by_user_action_outcome_object_and_date(client_admin, doctor_a, doctor_b):
    audit_record(action=actions.SCAN_UPLOADED, actor=doctor_a, obj=doctor_b)
    audit_record(action=actions.SCAN_VIEWED, actor=doctor_b)
    audit_record(action=actions.LOGIN_FAILED, outcome=actions.FAILURE, details={"username": "mallory"})

    def listed(**params):
        response = client_admin.get(reverse("audit:list"), params)
        assert response.status_code == 200
        return [(e.action, e.actor_username) for e in response.context["events"]]

    assert listed(user="doctor_a") == [(actions.SCAN_UPLOADED, "doctor_a")]
    assert listed(action=actions.SCAN_VIEWED) == [(actions.SCAN_VIEWED, "doctor_b")]
    assert listed(outcome="failure") == [(actions.LOGIN_FAILED, "")]
    assert listed(object_type="accounts.user", object_id=doctor_b.pk) == [(actions.SCAN_UPLOADED, "doctor_a")]
    today = AuditEvent.objects.latest("seq").created_at.date()
    assert len(listed(date_from=today, date_to=today, user="doctor")) == 2
    assert listed(date_to=today.replace(year=today.year - 1)) == []


def test_pagination(client_admin, doctor_a):
    for i in range(60):
        audit_record(action=actions.SCAN_VIEWED, actor=doctor_a, details={"i": i})
    first = client_admin.get(reverse("audit:list"), {"action": actions.SCAN_VIEWED})
    second = client_admin.get(reverse("audit:list"), {"action": actions.SCAN_VIEWED, "page": 2})
    assert len(first.context["events"]) == 50 and len(second.context["events"]) == 10
    assert first.context["events"][0].details == {"i": 59}


def test_csv_export_holds_the_filtered_rows_and_is_audited_once(client_admin, doctor_a):
    audit_record(action=actions.SCAN_UPLOADED, actor=doctor_a)
    audit_record(action=actions.LOGIN_FAILED, outcome=actions.FAILURE, details={"username": "=HYPERLINK(\"x\")"})

    response = client_admin.get(reverse("audit:export"), {"outcome": "failure"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == [actions.LOGIN_FAILED]
    assert rows[0]["details"].startswith("{")  # JSON, not a formula
    assert len(rows[0]["hash"]) == 64

    exports = AuditEvent.objects.filter(action=actions.AUDIT_LOG_EXPORTED)
    assert exports.count() == 1
    event = exports.get()
    assert (event.actor_username, event.details) == ("admin_1", {"filters": {"outcome": "failure"}, "rows": 1,
                                                                  "format": "csv"})


def test_csv_cells_that_would_run_as_formulas_are_neutralised():
    from audit.csv_export import spreadsheet_safe

    assert spreadsheet_safe("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert spreadsheet_safe("@SUM(1)") == "'@SUM(1)"
    assert spreadsheet_safe("doctor_a") == "doctor_a"


def test_verify_page_shows_intact_and_broken(client_admin, doctor_a):
    from django.db import connection

    audit_record(action=actions.SCAN_VIEWED, actor=doctor_a)
    assert b"intact" in client_admin.get(reverse("audit:verify")).content
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_update_delete")
        cursor.execute("UPDATE audit_auditevent SET outcome = 'failure' WHERE seq = 1")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_update_delete")
    assert b"has been tampered with" in client_admin.get(reverse("audit:verify")).content


def test_scan_history_lists_the_scans_events_and_its_jobs(client_admin, doctor_a, doctor_b, scan):
    from scans.models import Scan

    other = Scan.objects.create(owner=doctor_b, kind="image", original_name="other.png", sha256="d" * 64,
                                size_bytes=1, n_slices=1, width=8, height=8, pixel_dtype="uint8")
    audit_record(action=actions.SCAN_UPLOADED, actor=doctor_a, obj=scan)
    audit_record(action=actions.SCAN_VIEWED, actor=doctor_a, obj=other)
    audit_record(action=actions.REPORT_PDF_DOWNLOADED, actor=doctor_a, details={"scan_id": scan.pk})

    response = client_admin.get(reverse("audit:scan_history", args=[scan.pk]))
    assert response.status_code == 200
    # This very look at the history is itself part of the scan's history.
    assert [e.action for e in response.context["events"]] == [
        actions.SCAN_HISTORY_VIEWED, actions.REPORT_PDF_DOWNLOADED, actions.SCAN_UPLOADED]
    assert AuditEvent.objects.filter(action=actions.SCAN_HISTORY_VIEWED, object_id=str(scan.pk)).count() == 1
    assert client_admin.get(reverse("audit:scan_history", args=[scan.pk + 999])).status_code == 404


def test_api_lists_events_for_admins(client_admin, doctor_a):
    audit_record(action=actions.SCAN_UPLOADED, actor=doctor_a)
    response = client_admin.get(reverse("api-audit-events"), {"action": actions.SCAN_UPLOADED})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1 and body["results"][0]["actor_username"] == "doctor_a"
    assert client_admin.get(reverse("api-audit-events"), {"date_from": "not-a-date"}).status_code == 400
