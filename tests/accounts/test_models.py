import pytest


@pytest.mark.django_db
def test_superuser_is_portal_admin(django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.org", "Correct-Horse-Battery-9")
    assert user.role == "admin"
    assert user.is_portal_admin


def test_new_user_is_doctor(doctor_a):
    assert doctor_a.role == "doctor"
    assert not doctor_a.is_portal_admin
    assert doctor_a.password.startswith("argon2")
