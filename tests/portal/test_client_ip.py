import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from portal.client_ip import client_ip


def request(xff=None, remote="10.0.0.5"):
    meta = {"REMOTE_ADDR": remote}
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    return RequestFactory().get("/", **meta)


def test_directly_exposed_the_header_is_ignored(settings):
    settings.BEHIND_PROXY = False
    assert client_ip(request("203.0.113.9")) == "10.0.0.5"


@pytest.mark.parametrize(("xff", "count", "expected"), [
    ("203.0.113.9", 1, "203.0.113.9"),
    ("6.6.6.6, 203.0.113.9", 1, "203.0.113.9"),        # a forged entry on the left is not believed
    ("203.0.113.9, 10.0.0.2", 2, "203.0.113.9"),       # two proxies
    (None, 1, "10.0.0.5"),                              # no header: the peer itself
    ("203.0.113.9", 2, "10.0.0.5"),                     # fewer entries than proxies: the peer
])
def test_behind_proxies_the_client_is_counted_from_the_right(settings, xff, count, expected):
    settings.BEHIND_PROXY = True
    settings.PROXY_COUNT = count
    assert client_ip(request(xff)) == expected


@pytest.mark.django_db
def test_lockout_behind_a_proxy_is_per_client_not_per_proxy(settings, doctor_a):
    settings.BEHIND_PROXY = True
    settings.PROXY_COUNT = 1
    login = reverse("accounts:login")
    attacker = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attacker.post(login, {"username": "doctor_a", "password": "wrong"})
    assert attacker.post(login, {"username": "doctor_a", "password": "Correct-Horse-Battery-9"}).status_code == 429
    # The real doctor comes through the same proxy from another address and is not locked out.
    doctor = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.20")
    assert doctor.post(login, {"username": "doctor_a", "password": "Correct-Horse-Battery-9"}).status_code == 302
