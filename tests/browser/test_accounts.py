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
