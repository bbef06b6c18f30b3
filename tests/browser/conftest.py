"""Playwright in headless Debian Chromium against pytest-django's live_server.

    def test_something(page, login_as, doctor_a):
        login_as(doctor_a)                 # through the real log-in form
        page.goto("/scans/upload/")        # paths are relative to the live server
        expect(page.get_by_role("heading", name="Upload")).to_be_visible()

Fixtures: `browser` (one per test), `page` (a fresh context per test: no shared cookies), `login_as`.
The browser is /usr/bin/chromium (override with PLAYWRIGHT_CHROMIUM); nothing is downloaded
(never run `playwright install`). Tests here should carry `pytestmark = pytest.mark.browser`.
"""
import os
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from tests.conftest import PASSWORD

CHROMIUM = os.environ.get("PLAYWRIGHT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def browser(monkeypatch):
    """One Chromium per test: Playwright's sync API keeps an asyncio loop running in this thread while it is
    open, which must not outlive the test (later tests would find a "running" loop)."""
    # With that loop running, Django's ORM would refuse to run here ("You cannot call this from an async
    # context"); the loop only drives the browser, so the test's own ORM calls are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"No Chromium at {CHROMIUM}: `apt-get install chromium` (Debian), or set PLAYWRIGHT_CHROMIUM.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # ORM calls made while Playwright's loop ran opened their own connections (Django keeps connections per
        # context); close them here, or the test database cannot be dropped at the end of the run.
        connections.close_all()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def login_as(page):
    """Log in through the form; lands on whatever the log-in redirects to."""

    def login(user, password=PASSWORD):
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        return page

    return login
