import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import PASSWORD

# Unauthenticated API requests get 403 across the portal: SessionAuthentication comes first in
# REST_FRAMEWORK's authentication classes, and DRF answers 401 only when the first one names a challenge.

pytestmark = pytest.mark.django_db

TOKEN_URL = reverse("api-auth-token")
ME_URL = reverse("api-me")
USERS_URL = reverse("api-user-list")


def token_client(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_obtain_token_then_use_it(doctor_a):
    response = APIClient().post(TOKEN_URL, {"username": "doctor_a", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    assert Token.objects.get(user=doctor_a).key == key
    me = token_client(key).get(ME_URL)
    assert me.status_code == 200
    assert me.json()["username"] == "doctor_a"
    assert me.json()["role"] == "doctor" and me.json()["is_portal_admin"] is False
    assert "password" not in me.json()


def test_obtain_token_twice_returns_the_same_token(doctor_a):
    first = APIClient().post(TOKEN_URL, {"username": "doctor_a", "password": PASSWORD}).json()["token"]
    second = APIClient().post(TOKEN_URL, {"username": "doctor_a", "password": PASSWORD}).json()["token"]
    assert first == second


def test_wrong_password_gets_no_token(doctor_a):
    response = APIClient().post(TOKEN_URL, {"username": "doctor_a", "password": "wrong"})
    assert response.status_code == 400
    assert not Token.objects.exists()


def test_inactive_user_gets_no_token(doctor_a):
    doctor_a.is_active = False
    doctor_a.save()
    assert APIClient().post(TOKEN_URL, {"username": "doctor_a", "password": PASSWORD}).status_code == 400


def test_token_endpoint_honours_the_lockout(doctor_a, settings):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(TOKEN_URL, {"username": "doctor_a", "password": "wrong"})
    response = client.post(TOKEN_URL, {"username": "doctor_a", "password": PASSWORD})
    assert response.status_code == 429
    assert "locked" in response.json()["detail"].lower()
    assert not Token.objects.exists()


def test_revoke_token(doctor_a):
    key = APIClient().post(TOKEN_URL, {"username": "doctor_a", "password": PASSWORD}).json()["token"]
    client = token_client(key)
    assert client.delete(TOKEN_URL).status_code == 204
    assert not Token.objects.filter(user=doctor_a).exists()
    assert client.get(ME_URL).status_code == 403


def test_revoke_needs_authentication():
    assert APIClient().delete(TOKEN_URL).status_code == 403


def test_me_requires_authentication():
    assert APIClient().get(ME_URL).status_code == 403


def test_me_with_session(client_a):
    assert client_a.get(ME_URL).json()["username"] == "doctor_a"


def test_deactivated_users_token_stops_working(doctor_a, admin_user):
    from accounts import services

    key = services.token_issue(user=doctor_a).key
    services.user_deactivate(actor=admin_user, user=doctor_a)
    assert token_client(key).get(ME_URL).status_code == 403


def test_user_list_is_for_admins_only(doctor_a, doctor_b, admin_user):
    assert APIClient().get(USERS_URL).status_code == 403
    doctor = APIClient()
    doctor.force_authenticate(doctor_a)
    assert doctor.get(USERS_URL).status_code == 403
    assert doctor.get(reverse("api-user-detail", args=[doctor_b.pk])).status_code == 403
    admin = APIClient()
    admin.force_authenticate(admin_user)
    body = admin.get(USERS_URL).json()
    assert body["count"] == 3
    assert [u["username"] for u in body["results"]] == ["admin_1", "doctor_a", "doctor_b"]
    assert admin.get(USERS_URL, {"role": "admin"}).json()["count"] == 1
    assert admin.get(reverse("api-user-detail", args=[doctor_b.pk])).json()["username"] == "doctor_b"
    assert admin.get(reverse("api-user-detail", args=[999999])).status_code == 404


def test_openapi_schema_lists_the_accounts_endpoints(client_a):
    response = client_a.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/auth/token/", "/api/me/", "/api/users/", "/api/users/{id}/"} <= set(paths)
