import pytest
from audit.models import AuditEvent
from axes.models import AccessAttempt
from django.core.exceptions import ValidationError
from rest_framework.authtoken.models import Token

from accounts import selectors, services
from accounts.models import User

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Quiet-Harbour-Lantern-42"


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_user_create_hashes_password_and_is_audited(admin_user):
    user = services.user_create(actor=admin_user, username="dr_house", password=NEW_PASSWORD, role="doctor",
                                email="house@example.org", first_name="Gregory", last_name="House")
    assert user.role == "doctor" and user.is_active
    assert user.check_password(NEW_PASSWORD)
    assert user.password.startswith("argon2")
    (event,) = events("user.created")
    assert event.actor_id == admin_user.pk
    assert event.object_id == str(user.pk)
    assert event.details == {"username": "dr_house", "role": "doctor"}


@pytest.mark.parametrize("password", ["short", "password123", "12345678901234", "dr_house_2024"])
def test_user_create_rejects_weak_passwords(admin_user, password):
    with pytest.raises(ValidationError):
        services.user_create(actor=admin_user, username="dr_house", password=password)
    assert not User.objects.filter(username="dr_house").exists()
    assert events("user.created") == []


def test_user_create_rejects_username_differing_only_in_case(admin_user, doctor_a):
    with pytest.raises(ValidationError) as error:
        services.user_create(actor=admin_user, username="Doctor_A", password=NEW_PASSWORD)
    assert "username" in error.value.message_dict


def test_user_update_records_changes(admin_user, doctor_a):
    services.user_update(actor=admin_user, user=doctor_a, data={"first_name": "Ann", "email": "ann@example.org"})
    doctor_a.refresh_from_db()
    assert doctor_a.first_name == "Ann"
    (event,) = events("user.updated")
    assert event.details["changes"] == {"first_name": ["", "Ann"], "email": ["doctor_a@example.org", "ann@example.org"]}


def test_user_update_role_change_is_its_own_action(admin_user, doctor_a):
    services.user_update(actor=admin_user, user=doctor_a, data={"role": "admin"})
    doctor_a.refresh_from_db()
    assert doctor_a.is_portal_admin
    assert [e.details["changes"] for e in events("user.role_changed")] == [{"role": ["doctor", "admin"]}]


def test_user_update_without_changes_records_nothing(admin_user, doctor_a):
    services.user_update(actor=admin_user, user=doctor_a, data={"first_name": "", "role": "doctor"})
    assert AuditEvent.objects.filter(action__startswith="user.").count() == 0


def test_admin_cannot_demote_themselves(admin_user, make_user):
    make_user("admin_2", role="admin")
    with pytest.raises(ValidationError):
        services.user_update(actor=admin_user, user=admin_user, data={"role": "doctor"})
    admin_user.refresh_from_db()
    assert admin_user.role == "admin"


def test_last_active_admin_cannot_be_demoted_or_deactivated(admin_user, doctor_a):
    # Services do not check who calls them (pages and API do); the last-admin rule holds whatever the path.
    with pytest.raises(ValidationError):
        services.user_update(actor=doctor_a, user=admin_user, data={"role": "doctor"})
    with pytest.raises(ValidationError):
        services.user_deactivate(actor=doctor_a, user=admin_user)
    admin_user.refresh_from_db()
    assert admin_user.is_active and admin_user.role == "admin"
    assert selectors.active_admin_count() == 1


def test_an_admin_can_be_demoted_while_another_remains(admin_user, make_user):
    other = make_user("admin_2", role="admin")
    services.user_update(actor=admin_user, user=other, data={"role": "doctor"})
    other.refresh_from_db()
    assert not other.is_portal_admin


def test_deactivate_blocks_login_revokes_token_and_is_audited(admin_user, doctor_a):
    token = services.token_issue(user=doctor_a)
    services.user_deactivate(actor=admin_user, user=doctor_a)
    doctor_a.refresh_from_db()
    assert not doctor_a.is_active
    assert not Token.objects.filter(pk=token.pk).exists()
    assert len(events("user.disabled")) == 1


def test_cannot_deactivate_yourself(admin_user):
    with pytest.raises(ValidationError):
        services.user_deactivate(actor=admin_user, user=admin_user)
    admin_user.refresh_from_db()
    assert admin_user.is_active


def test_reactivate_is_audited(admin_user, doctor_a):
    services.user_deactivate(actor=admin_user, user=doctor_a)
    services.user_reactivate(actor=admin_user, user=doctor_a)
    doctor_a.refresh_from_db()
    assert doctor_a.is_active
    assert len(events("user.enabled")) == 1


def test_password_reset_by_admin_revokes_token_lifts_lockout_and_is_audited(admin_user, doctor_a):
    services.token_issue(user=doctor_a)
    AccessAttempt.objects.create(username="doctor_a", ip_address="10.0.0.1", user_agent="x", failures_since_start=9,
                                 get_data="", post_data="", http_accept="", path_info="/")
    services.user_set_password(actor=admin_user, user=doctor_a, password=NEW_PASSWORD)
    doctor_a.refresh_from_db()
    assert doctor_a.check_password(NEW_PASSWORD)
    assert not Token.objects.filter(user=doctor_a).exists()
    assert not AccessAttempt.objects.filter(username="doctor_a").exists()
    assert len(events("user.password_reset")) == 1
    assert events("auth.password_changed") == []


def test_own_password_change_is_a_password_change(doctor_a):
    services.user_set_password(actor=doctor_a, user=doctor_a, password=NEW_PASSWORD)
    assert len(events("auth.password_changed")) == 1
    assert events("user.password_reset") == []


def test_token_issue_is_stable_and_revoke_removes_it(doctor_a):
    first = services.token_issue(user=doctor_a)
    assert services.token_issue(user=doctor_a).key == first.key
    assert services.token_revoke(user=doctor_a) is True
    assert services.token_revoke(user=doctor_a) is False
    assert len(events("auth.api_token_created")) == 1
    assert len(events("auth.api_token_revoked")) == 1


def test_user_list_filters(admin_user, doctor_a, doctor_b):
    services.user_deactivate(actor=admin_user, user=doctor_b)
    assert [u.username for u in selectors.user_list()] == ["admin_1", "doctor_a", "doctor_b"]
    assert [u.username for u in selectors.user_list(filters={"role": "doctor"})] == ["doctor_a", "doctor_b"]
    assert [u.username for u in selectors.user_list(filters={"status": "inactive"})] == ["doctor_b"]
    assert [u.username for u in selectors.user_list(filters={"q": "DOCTOR_A@"})] == ["doctor_a"]


def test_a_superuser_stays_an_admin(admin_user, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "Quiet-Harbour-Lantern-42")
    with pytest.raises(ValidationError):
        services.user_update(actor=admin_user, user=root, data={"role": "doctor"})
    root.refresh_from_db()
    assert root.role == "admin"
    assert events("user.role_changed") == []
