import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_login_lands_on_the_scans_list_and_logout_returns_to_login(page, doctor_a):
    doctor_a.first_name, doctor_a.last_name = "Ada", "Lovelace"
    doctor_a.save()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))  # the landing page needs a log-in

    page.get_by_label("Username").fill("doctor_a")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Wrong username or password")).to_be_visible()

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(reverse("scans:list")) + "$"))
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Scans")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)  # doctors have no user management
    expect(page.get_by_role("link", name=re.compile("Ada Lovelace"))).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_text("You have been logged out.")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))  # the session is really gone


def test_admin_creates_a_doctor_who_then_logs_in(page, login_as, admin_user, browser, live_server):
    login_as(admin_user)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.get_by_role("link", name="New user").click()
    page.get_by_label("Username").fill("dr_grey")
    page.get_by_label("First name").fill("Meredith")
    page.get_by_label("Role").select_option("doctor")
    page.get_by_label("Initial password", exact=True).fill("Quiet-Harbour-Lantern-42")
    page.get_by_label("Initial password (again)").fill("Quiet-Harbour-Lantern-42")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text("User “dr_grey” created")).to_be_visible()
    expect(page.get_by_role("cell", name="dr_grey")).to_be_visible()

    other = browser.new_context(base_url=live_server.url)
    try:
        doctor_page = other.new_page()
        doctor_page.goto("/accounts/login/")
        doctor_page.get_by_label("Username").fill("dr_grey")
        doctor_page.get_by_label("Password").fill("Quiet-Harbour-Lantern-42")
        doctor_page.get_by_role("button", name="Log in").click()
        expect(doctor_page).to_have_url(re.compile(re.escape(reverse("scans:list")) + "$"))
    finally:
        other.close()


def test_a_doctor_sets_up_two_factor_authentication_and_logs_in_with_a_code(page, login_as, doctor_a):
    """The whole flow a doctor goes through, with codes computed from the key the page shows, as an app would."""
    import time

    from tests.accounts.test_two_factor import code_for
    from tests.browser.test_accessibility import _violations

    login_as(doctor_a)
    page.goto(reverse("accounts:me"))
    page.get_by_role("link", name="Set it up").click()
    expect(page.locator("[data-two-factor-qr] svg")).to_be_visible()
    secret = page.locator("[data-two-factor-secret]").inner_text()
    page.get_by_label("Code from your authenticator app").fill(code_for(secret))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_text("Two-factor authentication is on")).to_be_visible()
    expect(page.locator("[data-recovery-codes] li")).to_have_count(10)  # shown once, now
    assert _violations(page) == []
    page.get_by_role("link", name="I have saved them").click()
    expect(page).to_have_url(re.compile(re.escape(reverse("accounts:me")) + "$"))

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("doctor_a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(reverse("accounts:two_factor_verify"))))
    assert _violations(page) == []
    expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_count(0)  # no menu before it
    page.goto(reverse("scans:list"))  # nothing else opens before the code
    expect(page).to_have_url(re.compile(re.escape(reverse("accounts:two_factor_verify")) + r"\?next=%2F$"))
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("That code is not the one your authenticator app shows now")).to_be_visible()
    time.sleep(1.1)  # the wait after a wrong code
    page.get_by_label("Code from your authenticator app").fill(code_for(secret, time.time() + 30))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(re.escape(reverse("scans:list")) + "$"))
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Scans")).to_be_visible()
