"""Headless Chromium through Playwright's sync API: the browser, a page on the live server,
logging in, and the labeling page's steps as the browser tests drive them."""

import os
import re
import shutil

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import expect

CHROMIUM = os.environ.get("TALLY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory's
HEARTBEAT_S = 0.3  # the page reads it from settings; short so a test can see several beats


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM} (install Debian's chromium package)")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread for as long as the
    # browser lives; the ORM calls the tests make between browser steps (and the database
    # flush after each test) are plain blocking calls, which Django allows with this flag.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server, settings):
    """A page on the live server whose script errors and CSP refusals land in page.js_errors."""
    settings.TALLY_HEARTBEAT_INTERVAL_SECONDS = HEARTBEAT_S
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Script errors and CSP refusals count; an expected 4xx answer ("Failed to load resource") does not.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.js_errors = errors
    yield page
    context.close()


def log_in(page, username):
    """Through the login form, as a person would: type both fields, press Enter."""
    page.goto(reverse("login"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    # The POST redirects home; waiting for that page's load event means the test's next goto
    # does not cut a navigation short.
    page.wait_for_url(re.compile(r"^https?://[^/]+/$"))


def open_as(browser, base_url, user, **context_options):
    """A new context already logged in as `user` (a session made by Django's test client)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=base_url, **context_options)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}])
    return context, context.new_page()


# The labeling page. Waits go through locators: the page's CSP forbids eval, so no
# wait_for_function(string).
def shown_attempt_id(page) -> str:
    expect(page.locator("#text")).to_have_attribute("data-attempt-id", re.compile(r"^\d+$"))
    return page.locator("#text").get_attribute("data-attempt-id")


def wait_all_saved(page, timeout=None):
    """Every answer given is acknowledged (the page's "saving…" note is gone). Leave the page
    only after this: with answers unsaved its beforeunload handler cancels the navigation,
    and page.goto fails with net::ERR_ABORTED."""
    expect(page.locator("#sync")).to_be_hidden(timeout=timeout)


def label_by_keyboard(page, key: str) -> str:
    """Press a label's number and Enter; the next text must be on screen at once (prefetched)."""
    before = shown_attempt_id(page)
    expect(page.locator("#labeler")).to_have_attribute("data-ahead", re.compile(r"^[1-9]"))  # prefetched
    page.keyboard.press(key)
    assert page.locator(".label-choice[aria-pressed=true]").count() == 1
    page.keyboard.press("Enter")
    # No waiting: the next text was already loaded, so it replaced the old one synchronously.
    after = page.locator("#text").get_attribute("data-attempt-id")
    assert after and after != before, "the next text was not already loaded when Enter was pressed"
    return before


# Every <img> on the page has loaded or failed, and a task has run since: an injected
# onerror handler would have fired by then. (page.evaluate runs under the page's CSP, which
# wait_for_function(string) cannot.)
IMAGES_SETTLED = """() => Promise.all(Array.from(document.images, (img) => img.complete ? null :
  new Promise((done) => { img.addEventListener("load", done); img.addEventListener("error", done); })))
  .then(() => new Promise((done) => setTimeout(done, 0)))"""


def wait_images_settled(page):
    page.evaluate(IMAGES_SETTLED)
