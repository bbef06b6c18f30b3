"""Shared fixtures: the four actors of the permission matrix, and media in a temporary folder."""
import pytest
from django.test import Client

PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def make_user(db, django_user_model):
    def make(username, role="doctor", **extra):
        return django_user_model.objects.create_user(
            username=username, password=PASSWORD, role=role, email=f"{username}@example.org", **extra
        )

    return make


@pytest.fixture
def doctor_a(make_user):
    return make_user("doctor_a")


@pytest.fixture
def doctor_b(make_user):
    return make_user("doctor_b")


@pytest.fixture
def admin_user(make_user):
    return make_user("admin_1", role="admin")


def _logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_a(doctor_a):
    return _logged_in(doctor_a)


@pytest.fixture
def client_b(doctor_b):
    return _logged_in(doctor_b)


@pytest.fixture
def client_admin(admin_user):
    return _logged_in(admin_user)
