import re
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")
LOGOUT = reverse("accounts:logout")
NEW_PASSWORD = "Quiet-Harbour-Lantern-42"


def login(client, username, password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": username, "password": password, **extra})


def csrf_token_from(response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode()).group(1)


# --- Log-in and log-out


def test_login_page_renders_a_form_with_csrf(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="username"' in html and 'name="password"' in html


def test_login_lands_on_the_scans_list(client, doctor_a):
    response = login(client, "doctor_a")
    assert response.status_code == 302
    assert response.url == reverse("scans:list")
    assert client.get(reverse("accounts:me")).context["user"] == doctor_a


def test_login_falls_back_to_the_account_page_when_the_landing_page_is_not_routed(client, doctor_a, settings):
    settings.LOGIN_REDIRECT_URL = "nowhere:list"
    response = login(client, "doctor_a")
    assert response.url == reverse("accounts:me")


def test_login_follows_a_safe_next_and_ignores_an_offsite_one(client, doctor_a):
    response = client.post(f"{LOGIN}?next=/accounts/me/password/", {"username": "doctor_a", "password": PASSWORD})
    assert response.url == "/accounts/me/password/"
    client.post(LOGOUT)
    response = client.post(LOGIN, {"username": "doctor_a", "password": PASSWORD, "next": "https://evil.example/"})
    assert "evil.example" not in response.url


def test_logged_in_user_visiting_login_is_sent_on(client_a):
    response = client_a.get(LOGIN)
    assert response.status_code == 302


def test_wrong_password_shows_an_error_and_does_not_log_in(client, doctor_a):
    response = login(client, "doctor_a", "not-the-password")
    assert response.status_code == 200
    assert "Wrong username or password" in response.content.decode()
    assert client.get(reverse("accounts:me")).status_code == 302


def test_deactivated_user_cannot_log_in(client, doctor_a):
    doctor_a.is_active = False
    doctor_a.save()
    response = login(client, "doctor_a")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_is_post_only(client_a):
    assert client_a.get(LOGOUT).status_code == 405
    assert client_a.get(reverse("accounts:me")).status_code == 200  # still logged in
    response = client_a.post(LOGOUT)
    assert response.status_code == 302 and response.url == LOGIN
    assert client_a.get(reverse("accounts:me")).status_code == 302


def test_lockout_after_repeated_failures(client, doctor_a, doctor_b, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert login(client, "doctor_a", "wrong-password").status_code == 200
    locked = login(client, "doctor_a", "wrong-password")
    assert locked.status_code == 429
    assert "Log-in locked" in locked.content.decode()
    assert "blocked for 30 minutes after the last attempt" in locked.content.decode()
    assert "accounts/locked_out.html" in [t.name for t in locked.templates]
    # Now even the right password is refused, from this address, for this user ...
    assert login(client, "doctor_a").status_code == 429
    assert "_auth_user_id" not in client.session
    # ... while another user on the same computer can still log in.
    assert login(Client(), "doctor_b").status_code == 302


def test_admin_password_reset_lifts_a_lockout(client, doctor_a, client_admin, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "doctor_a", "wrong-password")
    assert login(client, "doctor_a").status_code == 429
    response = client_admin.post(reverse("accounts:user_password", args=[doctor_a.pk]),
                                 {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert login(client, "doctor_a", NEW_PASSWORD).status_code == 302


# --- Sessions and CSRF


def test_session_cookie_is_httponly_browser_session_and_expires_server_side(client, doctor_a, settings):
    response = login(client, "doctor_a")
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["expires"] == "" and cookie["max-age"] == ""  # gone when the browser closes
    assert cookie["samesite"] == "Lax"
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE


def test_idle_session_expires(client, doctor_a):
    login(client, "doctor_a")
    assert client.get(reverse("accounts:me")).status_code == 200
    Session.objects.filter(session_key=client.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("accounts:me"))
    assert response.status_code == 302 and response.url.startswith(LOGIN)


def test_activity_extends_the_session(client, doctor_a):
    login(client, "doctor_a")
    key = client.session.session_key
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() + timedelta(minutes=1))
    client.get(reverse("accounts:me"))
    assert Session.objects.get(session_key=key).expire_date > timezone.now() + timedelta(hours=1)


def test_login_without_csrf_token_is_refused(doctor_a):
    client = Client(enforce_csrf_checks=True)
    response = client.post(LOGIN, {"username": "doctor_a", "password": PASSWORD})
    assert response.status_code == 403
    page = client.get(LOGIN)
    response = client.post(LOGIN, {"username": "doctor_a", "password": PASSWORD,
                                   "csrfmiddlewaretoken": csrf_token_from(page)})
    assert response.status_code == 302


def test_logout_and_admin_forms_without_csrf_token_are_refused(admin_user, doctor_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(reverse("accounts:user_deactivate", args=[doctor_a.pk])).status_code == 403
    doctor_a.refresh_from_db()
    assert doctor_a.is_active
    assert client.post(LOGOUT).status_code == 403
    page = client.get(reverse("accounts:user_list"))
    response = client.post(reverse("accounts:user_deactivate", args=[doctor_a.pk]),
                           {"csrfmiddlewaretoken": csrf_token_from(page)})
    assert response.status_code == 302
    doctor_a.refresh_from_db()
    assert not doctor_a.is_active


# --- The user's own account


def test_account_page_and_password_change(client, doctor_a):
    login(client, "doctor_a")
    assert "doctor_a" in client.get(reverse("accounts:me")).content.decode()
    response = client.post(reverse("accounts:password_change"), {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("accounts:me")).status_code == 200  # this session survives
    doctor_a.refresh_from_db()
    assert doctor_a.check_password(NEW_PASSWORD)


def test_password_change_needs_the_old_password(client_a, doctor_a):
    response = client_a.post(reverse("accounts:password_change"), {
        "old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 200
    doctor_a.refresh_from_db()
    assert doctor_a.check_password(PASSWORD)


# --- User management: the permission matrix (anonymous -> log-in, doctor -> 403, admin -> allowed)


def management_requests(target):
    return [
        ("get", reverse("accounts:user_list"), None, 200),
        ("get", reverse("accounts:user_create"), None, 200),
        ("get", reverse("accounts:user_edit", args=[target.pk]), None, 200),
        ("get", reverse("accounts:user_password", args=[target.pk]), None, 200),
        ("post", reverse("accounts:user_deactivate", args=[target.pk]), {}, 302),
        ("post", reverse("accounts:user_reactivate", args=[target.pk]), {}, 302),
    ]


def test_anonymous_is_sent_to_login_for_every_management_page(client, doctor_b):
    for method, url, data, _ in management_requests(doctor_b):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302, url
        assert response.url.startswith(f"{LOGIN}?next="), url


def test_doctor_gets_403_on_every_management_page(client_a, doctor_a, doctor_b):
    for method, url, data, _ in management_requests(doctor_b):
        assert getattr(client_a, method)(url, data).status_code == 403, url
    doctor_b.refresh_from_db()
    assert doctor_b.is_active
    # A doctor is refused before the object is looked up: no probing which ids exist.
    assert client_a.get(reverse("accounts:user_edit", args=[999999])).status_code == 403
    # Each refusal is in the audit log.
    from audit.models import AuditEvent

    denied = AuditEvent.objects.filter(action="access.denied", actor_username="doctor_a")
    assert denied.count() == len(management_requests(doctor_b)) + 1
    assert denied.filter(details__path=reverse("accounts:user_list")).exists()


def test_admin_reaches_every_management_page(client_admin, doctor_b):
    for method, url, data, expected in management_requests(doctor_b):
        assert getattr(client_admin, method)(url, data).status_code == expected, url


def test_admin_gets_404_for_a_user_that_does_not_exist(client_admin):
    assert client_admin.get(reverse("accounts:user_edit", args=[999999])).status_code == 404
    assert client_admin.post(reverse("accounts:user_deactivate", args=[999999])).status_code == 404


def test_deactivated_admin_loses_access(client_admin, admin_user, make_user):
    make_user("admin_2", role="admin")
    User.objects.filter(pk=admin_user.pk).update(is_active=False)
    response = client_admin.get(reverse("accounts:user_list"))
    assert response.status_code == 302  # the session no longer authenticates


def test_users_nav_link_only_for_admins(client_a, client_admin):
    users_url = reverse("accounts:user_list")
    assert f'href="{users_url}"' not in client_a.get(reverse("accounts:me")).content.decode()
    assert f'href="{users_url}"' in client_admin.get(reverse("accounts:me")).content.decode()


# --- User management: what the pages do


def test_admin_creates_a_user_who_can_then_log_in(client_admin):
    response = client_admin.post(reverse("accounts:user_create"), {
        "username": "dr_grey", "first_name": "Meredith", "last_name": "Grey", "email": "grey@example.org",
        "role": "doctor", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    user = User.objects.get(username="dr_grey")
    assert user.role == "doctor" and user.get_full_name() == "Meredith Grey"
    assert login(Client(), "dr_grey", NEW_PASSWORD).status_code == 302


def test_create_user_form_reports_errors(client_admin, doctor_a):
    response = client_admin.post(reverse("accounts:user_create"), {
        "username": "DOCTOR_A", "role": "doctor", "password1": "short", "password2": "other"})
    assert response.status_code == 200
    form = response.context["form"]
    assert "username" in form.errors and "password2" in form.errors
    response = client_admin.post(reverse("accounts:user_create"), {
        "username": "dr_new", "role": "doctor", "password1": "password", "password2": "password"})
    assert "password1" in response.context["form"].errors
    assert not User.objects.filter(username="dr_new").exists()


def test_admin_edits_role_and_the_change_is_audited(client_admin, doctor_b):
    from audit.models import AuditEvent

    response = client_admin.post(reverse("accounts:user_edit", args=[doctor_b.pk]), {
        "first_name": "Bea", "last_name": "B", "email": "bea@example.org", "role": "admin"})
    assert response.status_code == 302
    doctor_b.refresh_from_db()
    assert doctor_b.role == "admin" and doctor_b.first_name == "Bea"
    event = AuditEvent.objects.get(action="user.role_changed")
    assert event.actor_username == "admin_1" and event.object_id == str(doctor_b.pk)


def test_admin_cannot_demote_themselves_through_the_page(client_admin, admin_user):
    response = client_admin.post(reverse("accounts:user_edit", args=[admin_user.pk]), {
        "first_name": "", "last_name": "", "email": admin_user.email, "role": "doctor"})
    assert response.status_code == 200
    assert "role" in response.context["form"].errors
    admin_user.refresh_from_db()
    assert admin_user.role == "admin"


def test_deactivation_ends_the_doctors_session(client_admin, client_a, doctor_a):
    assert client_a.get(reverse("accounts:me")).status_code == 200
    client_admin.post(reverse("accounts:user_deactivate", args=[doctor_a.pk]))
    response = client_a.get(reverse("accounts:me"))
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    client_admin.post(reverse("accounts:user_reactivate", args=[doctor_a.pk]))
    assert login(Client(), "doctor_a").status_code == 302


def test_admin_cannot_deactivate_themselves_through_the_page(client_admin, admin_user):
    response = client_admin.post(reverse("accounts:user_deactivate", args=[admin_user.pk]), follow=True)
    assert "cannot deactivate your own account" in response.content.decode()
    admin_user.refresh_from_db()
    assert admin_user.is_active


def test_deactivate_by_get_is_not_allowed(client_admin, doctor_a):
    assert client_admin.get(reverse("accounts:user_deactivate", args=[doctor_a.pk])).status_code == 405
    doctor_a.refresh_from_db()
    assert doctor_a.is_active


def test_password_reset_page_validates_and_ends_the_users_sessions(client_admin, client_a, doctor_a):
    url = reverse("accounts:user_password", args=[doctor_a.pk])
    response = client_admin.post(url, {"new_password1": "short", "new_password2": "short"})
    assert response.status_code == 200 and response.context["form"].errors
    response = client_admin.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert client_a.get(reverse("accounts:me")).status_code == 302  # old session invalid after the reset
    assert login(Client(), "doctor_a", NEW_PASSWORD).status_code == 302


def test_user_list_search_and_pagination(client_admin, make_user):
    for i in range(30):
        make_user(f"doc_{i:02d}")
    page1 = client_admin.get(reverse("accounts:user_list"), {"role": "doctor"})
    assert len(page1.context["users"]) == 25 and page1.context["is_paginated"]
    assert "role=doctor&amp;page=2" in page1.content.decode()
    found = client_admin.get(reverse("accounts:user_list"), {"q": "doc_07"})
    assert [u.username for u in found.context["users"]] == ["doc_07"]


def test_django_admin_user_pages_work_for_a_superuser(client, django_user_model, doctor_a):
    root = django_user_model.objects.create_superuser("root", "root@example.org", PASSWORD)
    client.force_login(root)
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 200
    assert client.get(reverse("admin:accounts_user_change", args=[doctor_a.pk])).status_code == 200
    assert client.get(reverse("admin:accounts_user_add")).status_code == 200
