"""Log-in, log-out, failed log-in and lockout each write exactly one event, through the portal's own log-in
and log-out pages and the real middleware stack (sessions, axes, request id)."""
import pytest
from django.test import Client
from django.urls import reverse

from audit import actions
from audit.models import AuditEvent
from tests.conftest import PASSWORD

BROWSER = "Mozilla/5.0 (pytest)"


@pytest.fixture
def browser():
    return Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="192.0.2.10")


def _post_login(browser, username, password):
    return browser.post(reverse("accounts:login"), {"username": username, "password": password}, HTTP_X_REQUEST_ID="req-login-1")


def test_login_writes_one_event(browser, doctor_a):
    response = _post_login(browser, "doctor_a", PASSWORD)
    assert response.status_code == 302

    events = list(AuditEvent.objects.all())
    assert len(events) == 1
    event = events[0]
    assert (event.action, event.outcome) == (actions.LOGIN, "success")
    assert (event.actor_id, event.actor_username, event.actor_role) == (doctor_a.pk, "doctor_a", "doctor")
    assert (event.object_type, event.object_id) == ("accounts.user", str(doctor_a.pk))
    assert (event.ip_address, event.user_agent, event.request_id) == ("192.0.2.10", BROWSER, "req-login-1")
    assert response["X-Request-ID"] == "req-login-1"


def test_failed_login_writes_one_event_without_the_password(browser, doctor_a):
    response = _post_login(browser, "doctor_a", "wrong-password-123")
    assert response.status_code == 200

    events = list(AuditEvent.objects.all())
    assert len(events) == 1
    event = events[0]
    assert (event.action, event.outcome, event.actor_id) == (actions.LOGIN_FAILED, "failure", None)
    assert event.details == {"username": "doctor_a"}
    assert event.ip_address == "192.0.2.10"
    assert "wrong-password" not in str(event.details)


def test_logout_writes_one_event(browser, doctor_a):
    _post_login(browser, "doctor_a", PASSWORD)
    before = AuditEvent.objects.count()
    response = browser.post(reverse("accounts:logout"))
    assert response.status_code == 302

    new = list(AuditEvent.objects.order_by("seq")[before:])
    assert [(e.action, e.actor_username) for e in new] == [(actions.LOGOUT, "doctor_a")]


def test_logout_when_not_logged_in_writes_nothing(browser, db):
    browser.post(reverse("accounts:logout"))
    assert AuditEvent.objects.count() == 0


def test_lockout_writes_one_event_on_the_attempt_that_locks(browser, doctor_a, settings):
    settings.AXES_FAILURE_LIMIT = 3

    for _ in range(2):
        _post_login(browser, "doctor_a", "wrong-password-123")
    assert AuditEvent.objects.filter(action=actions.LOCKED_OUT).count() == 0

    response = _post_login(browser, "doctor_a", "wrong-password-123")
    assert response.status_code in (403, 429)

    assert AuditEvent.objects.filter(action=actions.LOGIN_FAILED).count() == 3
    locks = list(AuditEvent.objects.filter(action=actions.LOCKED_OUT))
    assert len(locks) == 1
    assert (locks[0].outcome, locks[0].details, locks[0].ip_address) == (
        "denied", {"username": "doctor_a", "failures": 3}, "192.0.2.10")

    # An attempt during the lock, even with the right password, is refused: one more failure, and the lock
    # restarts (one more lockout event).
    response = _post_login(browser, "doctor_a", PASSWORD)
    assert response.status_code in (403, 429)
    assert AuditEvent.objects.filter(action=actions.LOGIN_FAILED).count() == 4
    assert AuditEvent.objects.filter(action=actions.LOCKED_OUT).count() == 2
    assert not AuditEvent.objects.filter(action=actions.LOGIN).exists()
