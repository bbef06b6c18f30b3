import pytest
from django.core.management import call_command

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_ensure_admin_creates_the_first_admin_with_a_printed_random_password(capsys, monkeypatch):
    monkeypatch.delenv("ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    admin = User.objects.get()
    assert admin.username == "admin" and admin.is_portal_admin
    password = out.split("password:")[1].split()[0]
    assert admin.check_password(password)
    call_command("ensure_admin")  # second time: nothing new, nothing printed about passwords
    assert User.objects.count() == 1
    assert "password:" not in capsys.readouterr().out


def test_ensure_admin_takes_username_and_password_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("ADMIN_USERNAME", "chief")
    monkeypatch.setenv("ADMIN_PASSWORD", "Quiet-Harbour-Lantern-42")
    call_command("ensure_admin")
    admin = User.objects.get()
    assert admin.username == "chief" and admin.role == "admin"
    assert admin.check_password("Quiet-Harbour-Lantern-42")
    assert "Quiet-Harbour-Lantern-42" not in capsys.readouterr().out


def test_ensure_admin_refuses_a_weak_password(monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.setenv("ADMIN_PASSWORD", "admin")
    with pytest.raises(CommandError, match="too short"):
        call_command("ensure_admin")
    assert not User.objects.exists()


def test_ensure_admin_does_nothing_when_users_exist(doctor_a, capsys):
    call_command("ensure_admin")
    assert User.objects.count() == 1
    assert "Users exist" in capsys.readouterr().out
