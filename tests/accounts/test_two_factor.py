"""Two-factor authentication with a real TOTP authenticator (RFC 6238 codes computed here as an app would, from the
secret the portal shows): set-up, the log-in's second step, the API token, MFA_REQUIRED, the admin's reset, wrong
and replayed codes, and the audit trail."""
import base64
import re
import time
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import actions
from audit.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts:login")
SETUP = reverse("accounts:two_factor")
VERIFY = reverse("accounts:two_factor_verify")


def code_for(secret: str, at: float | None = None) -> str:
    """The code an authenticator app shows for the secret the set-up page gives (base32, in groups)."""
    key = secret.replace(" ", "")
    totp = TOTP(base64.b32decode(key + "=" * (-len(key) % 8)))
    totp.time = at if at is not None else time.time()
    return f"{totp.token():06d}"


def secret_on(page: str) -> str:
    return re.search(r"data-two-factor-secret>([A-Z2-7 ]+)</code>", page).group(1)


def set_up(client) -> str:
    """Turn two-factor authentication on through the account page; the secret."""
    page = client.get(SETUP).content.decode()
    assert "<svg" in page and "data-two-factor-qr" in page
    secret = secret_on(page)
    response = client.post(SETUP, {"action": "confirm", "code": code_for(secret)})
    assert response.status_code == 302
    return secret


def test_a_doctor_turns_it_on_then_every_log_in_asks_for_a_code(client_a, doctor_a):
    page = client_a.get(reverse("accounts:me")).content.decode()
    assert "Off: your password alone signs you in." in page
    first = client_a.get(SETUP).content.decode()
    assert secret_on(first) == secret_on(client_a.get(SETUP).content.decode())  # the same secret on a reload
    assert "otpauth://totp/" in TOTPDevice.objects.get(user=doctor_a).config_url
    wrong = client_a.post(SETUP, {"action": "confirm", "code": "000000"})
    assert "That code is not the one your authenticator app shows now" in wrong.content.decode()
    assert not TOTPDevice.objects.filter(user=doctor_a, confirmed=True).exists()
    time.sleep(1.1)  # the throttle's wait after a wrong code
    secret = set_up(client_a)
    assert TOTPDevice.objects.get(user=doctor_a).confirmed
    enabled = AuditEvent.objects.get(action=actions.MFA_ENABLED)
    assert (enabled.actor_id, enabled.details["username"]) == (doctor_a.pk, "doctor_a")
    assert secret.replace(" ", "") not in str(enabled.details)  # the secret is never logged
    assert "<span class=\"badge badge-done\">On</span>" in client_a.get(reverse("accounts:me")).content.decode()

    browser = Client()
    response = browser.post(LOGIN, {"username": "doctor_a", "password": PASSWORD})
    assert response.status_code == 302
    scans = reverse("scans:list")
    blocked = browser.get(scans)
    assert blocked.status_code == 302 and blocked["Location"] == f"{VERIFY}?{urlencode({'next': scans})}"
    api = browser.get(reverse("api-scan-list"))
    assert api.status_code == 403 and "give the code from your authenticator app" in api.json()["detail"]
    assert browser.get(VERIFY).status_code == 200
    refused = browser.post(VERIFY, {"code": "12345", "next": scans})
    assert "Enter the 6-digit code" in refused.content.decode()
    failed = AuditEvent.objects.get(action=actions.MFA_FAILED)
    assert (failed.outcome, failed.details["failures"], failed.details["where"]) == ("failure", 1, "log-in")
    time.sleep(1.1)
    later = time.time() + 30  # the next 30-second step: the set-up's code cannot be replayed
    done = browser.post(VERIFY, {"code": code_for(secret, later), "next": scans})
    assert done.status_code == 302 and done["Location"] == scans
    assert browser.get(scans).status_code == 200 and browser.get(reverse("api-scan-list")).status_code == 200
    assert AuditEvent.objects.filter(action=actions.MFA_VERIFIED, actor=doctor_a).count() == 1

    again = Client()
    again.post(LOGIN, {"username": "doctor_a", "password": PASSWORD})
    replay = again.post(VERIFY, {"code": code_for(secret, later)})  # the same code twice
    assert "or it was used already" in replay.content.decode()
    assert again.get(scans).status_code == 302


def test_wrong_codes_make_the_next_try_wait(client_a, doctor_a):
    secret = set_up(client_a)
    browser = Client()
    browser.post(LOGIN, {"username": "doctor_a", "password": PASSWORD})
    browser.post(VERIFY, {"code": "000000"})
    right = browser.post(VERIFY, {"code": code_for(secret, time.time() + 30)})  # right, but too soon
    assert "Too many wrong codes: try again after " in right.content.decode()
    assert browser.get(reverse("scans:list")).status_code == 302
    assert TOTPDevice.objects.get(user=doctor_a).throttling_failure_count == 1  # a refused try is not checked
    time.sleep(1.1)
    assert browser.post(VERIFY, {"code": code_for(secret, time.time() + 30)}).status_code == 302
    assert browser.get(reverse("scans:list")).status_code == 200
    assert TOTPDevice.objects.get(user=doctor_a).throttling_failure_count == 0


def test_the_api_token_needs_the_code_too(client_a, doctor_a):
    url = reverse("api-auth-token")
    assert Client().post(url, {"username": "doctor_a", "password": PASSWORD}).status_code == 200  # before: password
    secret = set_up(client_a)
    missing = Client().post(url, {"username": "doctor_a", "password": PASSWORD})
    assert missing.status_code == 400 and "send the 6-digit code from the authenticator app as otp_token" in \
        missing.json()["otp_token"][0]
    wrong = Client().post(url, {"username": "doctor_a", "password": PASSWORD, "otp_token": "000000"})
    assert wrong.status_code == 400 and AuditEvent.objects.filter(action=actions.MFA_FAILED).get().details[
        "where"] == "api token"
    time.sleep(1.1)
    ok = Client().post(url, {"username": "doctor_a", "password": PASSWORD,
                             "otp_token": code_for(secret, time.time() + 30)})
    assert ok.status_code == 200
    token = ok.json()["token"]
    assert Client().get(reverse("api-me"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_mfa_required_for_admins_sends_them_to_the_set_up_first(client_admin, client_a, admin_user, settings):
    settings.MFA_REQUIRED = "admins"
    assert client_a.get(reverse("scans:list")).status_code == 200  # a doctor: up to them
    blocked = client_admin.get(reverse("accounts:user_list"))
    assert blocked.status_code == 302 and blocked["Location"].startswith(f"{SETUP}?next=")
    page = client_admin.get(SETUP).content.decode()
    assert "Your account must use two-factor" in page and "Log out" in page
    secret = secret_on(page)
    done = client_admin.post(SETUP, {"action": "confirm", "code": code_for(secret), "next": "/accounts/users/"})
    assert done.status_code == 302 and done["Location"] == (reverse("accounts:two_factor_codes")
                                                            + "?next=%2Faccounts%2Fusers%2F")  # the codes, then on
    codes = client_admin.get(done["Location"]).content.decode()
    assert 'href="/accounts/users/">I have saved them</a>' in codes
    assert client_admin.get(reverse("accounts:user_list")).status_code == 200
    manage = client_admin.get(SETUP).content.decode()
    assert "it cannot be turned off" in manage and 'value="disable"' not in manage
    refused = client_admin.post(SETUP, {"action": "disable", "code": code_for(secret, time.time() + 30)})
    assert "is required for your account (MFA_REQUIRED)" in refused.content.decode()
    assert TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()


def test_an_admin_resets_a_lost_phone_and_the_user_turns_it_off_with_a_code(client_admin, client_a, doctor_a,
                                                                              admin_user):
    secret = set_up(client_a)
    users = client_admin.get(reverse("accounts:user_list")).content.decode()
    assert re.search(rf'data-two-factor="{doctor_a.pk}"><span class="badge badge-done">On', users)
    summary = re.search(r"data-two-factor-summary>(.*?)</p>", users, re.S).group(1)
    assert " ".join(summary.split()).startswith("Two-factor authentication is on for 1 of 2 active users (0 of 1 admin)")
    listed = client_admin.get(reverse("accounts:user_list"), {"two_factor": "on"}).content.decode()
    assert f'data-two-factor="{doctor_a.pk}"' in listed and f'data-two-factor="{admin_user.pk}"' not in listed
    listed = client_admin.get(reverse("accounts:user_list"), {"two_factor": "off"}).content.decode()
    assert f'data-two-factor="{doctor_a.pk}"' not in listed and f'data-two-factor="{admin_user.pk}"' in listed
    edit = client_admin.get(reverse("accounts:user_edit", args=[doctor_a.pk])).content.decode()
    assert "data-two-factor-reset" in edit and "Two-factor authentication: on since" in edit
    assert client_a.post(reverse("accounts:user_two_factor_reset", args=[doctor_a.pk])).status_code == 403
    response = client_admin.post(reverse("accounts:user_two_factor_reset", args=[doctor_a.pk]), follow=True)
    assert "Two-factor authentication of “doctor_a” reset" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=doctor_a).exists()
    reset = AuditEvent.objects.get(action=actions.USER_MFA_RESET)
    assert (reset.actor_id, reset.object_id) == (admin_user.pk, str(doctor_a.pk))
    browser = Client()
    browser.post(LOGIN, {"username": "doctor_a", "password": PASSWORD})
    assert browser.get(reverse("scans:list")).status_code == 200  # the password alone again

    secret = set_up(browser)
    wrong = browser.post(SETUP, {"action": "disable", "code": "000000"})
    assert "That code is not the one" in wrong.content.decode()
    time.sleep(1.1)
    off = browser.post(SETUP, {"action": "disable", "code": code_for(secret, time.time() + 30)})
    assert off.status_code == 302 and not TOTPDevice.objects.filter(user=doctor_a).exists()
    assert AuditEvent.objects.filter(action=actions.MFA_DISABLED, actor=doctor_a).count() == 1


def test_moving_to_a_new_phone_replaces_the_old_one_only_when_confirmed(client_a, doctor_a):
    old = set_up(client_a)
    page = client_a.get(SETUP + "?new=1").content.decode()
    assert "This replaces the authenticator app you set up on" in page
    new = secret_on(page)
    assert new != old and TOTPDevice.objects.filter(user=doctor_a, confirmed=True).count() == 1
    client_a.post(SETUP, {"action": "confirm", "code": code_for(new)})
    [device] = TOTPDevice.objects.filter(user=doctor_a)
    assert device.confirmed and AuditEvent.objects.filter(action=actions.MFA_ENABLED).order_by("seq").last().details[
        "replaced"]


def test_the_setting_is_checked_at_start_up():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE']="
                             "'portal.settings'; django.setup()"], env={**__import__("os").environ,
                                                                       "MFA_REQUIRED": "sometimes"},
                            capture_output=True, text=True)
    assert result.returncode != 0 and "MFA_REQUIRED must be off, admins or all, not 'sometimes'." in result.stderr


def test_recovery_codes_are_shown_once_and_each_signs_in_once(client_a, doctor_a):
    secret = set_up(client_a)
    page = client_a.get(reverse("accounts:two_factor_codes")).content.decode()
    codes = re.findall(r"<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</li>", page)
    assert len(codes) == 10 and len(set(codes)) == 10 and "They are shown only now." in page
    again = client_a.get(reverse("accounts:two_factor_codes")).content.decode()
    assert not re.findall(r"<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</li>", again) and "10 of 10 recovery codes left" in again
    made = AuditEvent.objects.get(action=actions.MFA_RECOVERY_CODES)
    assert made.details["codes"] == 10 and codes[0] not in str(made.details)
    # stored only as digests: nothing in the database could be typed in
    from django_otp.plugins.otp_static.models import StaticToken

    from accounts.two_factor import recovery_digest

    stored = set(StaticToken.objects.filter(device__user=doctor_a).values_list("token", flat=True))
    assert stored == {recovery_digest(doctor_a.pk, c) for c in codes}
    assert not {c.replace("-", "") for c in codes} & stored and all(len(t) == 16 for t in stored)

    browser = Client()
    browser.post(LOGIN, {"username": "doctor_a", "password": PASSWORD})
    used = browser.post(VERIFY, {"code": codes[3].upper()}, follow=True)  # as typed from paper
    assert used.redirect_chain[-1][0] == reverse("scans:list")
    assert "You used a recovery code: 9 left." in used.content.decode()
    verified = AuditEvent.objects.filter(action=actions.MFA_VERIFIED).get()
    assert (verified.details["with"], verified.details["recovery_codes_left"]) == ("recovery code", 9)
    other = Client()
    other.post(LOGIN, {"username": "doctor_a", "password": PASSWORD})
    refused = other.post(VERIFY, {"code": codes[3]})  # used up
    assert "not one of your recovery codes, or it was used already" in refused.content.decode()
    failed = AuditEvent.objects.get(action=actions.MFA_FAILED)
    assert (failed.details["with"], failed.details["failures"]) == ("recovery code", 1)

    # A new set voids the old one.
    time.sleep(1.1)
    client_a.post(reverse("accounts:two_factor_codes"))
    fresh = re.findall(r"<li>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</li>",
                       client_a.get(reverse("accounts:two_factor_codes")).content.decode())
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    assert "not one of your recovery codes" in other.post(VERIFY, {"code": codes[4]}).content.decode()
    time.sleep(2.1)
    assert other.post(VERIFY, {"code": fresh[0]}).status_code == 302

    # Turning it off removes them too.
    time.sleep(1.1)
    client_a.post(SETUP, {"action": "disable", "code": code_for(secret, time.time() + 30)})
    assert not StaticToken.objects.filter(device__user=doctor_a).exists()


def test_recovery_codes_kept_in_plain_text_before_are_hashed_and_still_work(doctor_a):
    """accounts/migrations/0002: the sets made before codes were stored as digests keep working, as digests."""
    import importlib

    from django.apps import apps
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

    from accounts import two_factor

    device = StaticDevice.objects.create(user=doctor_a, name=two_factor.RECOVERY_NAME, confirmed=True)
    StaticToken.objects.bulk_create([StaticToken(device=device, token="abcdefgh"), StaticToken(device=device,
                                                                                               token="ijklmnop")])
    migration = importlib.import_module("accounts.migrations.0002_hash_recovery_codes")
    migration.hash_plain_codes(apps, None)
    migration.hash_plain_codes(apps, None)  # run twice (a digest is left alone)
    assert set(StaticToken.objects.values_list("token", flat=True)) == {
        two_factor.recovery_digest(doctor_a.pk, "abcdefgh"), two_factor.recovery_digest(doctor_a.pk, "ijklmnop")}
    assert two_factor._use_recovery_code(doctor_a, "ABCD-EFGH") == 1  # as typed from the old sheet
    with pytest.raises(two_factor.TwoFactorError, match="used already"):
        two_factor._use_recovery_code(doctor_a, "abcd-efgh")
