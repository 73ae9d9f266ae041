"""The admin console in headless Chromium, clicking only links and buttons from the home page:
create a project, import texts, set a pay policy, invite two annotators and an auditor (each
joins through their link in their own browser), trigger a retrain and watch the run, verify
the ledger. No page on the way may be a DRF browsable-API page or the Django admin.

With TALLY_CONSOLE_SCREENSHOTS=docs/console the test also saves a screenshot of each page
(docs/console.md shows them)."""

import os
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import expect

from annotation.models import Example, Membership, Project
from core.roles import ADMINS_GROUP, GROUP_PERMISSIONS
from labor_ledger.models import LedgerVerification, PayPolicy
from tests.factories import UserFactory
from tests.support.browser import log_in
from training.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SHOTS = os.environ.get("TALLY_CONSOLE_SCREENSHOTS", "")
PASSPHRASE = "a long passphrase 42"
CSV = "text,label\n" + "".join(
    f"{text},{label}\n"
    for text, label in [
        ("Oil prices climb as OPEC weighs output cuts", "Business"),
        ("Late goal sends United into the cup final", "Sports"),
        ("Leaders meet in Geneva to discuss the ceasefire", "World"),
        ("Shares of the retailer fell after weak holiday sales", "Business"),
        ("The champion retires after twenty seasons", "Sports"),
        ("Floods displace thousands across the region", "World"),
    ]
)


def checked(page, name: str = ""):  # noqa: F811
    """The page is one of ours: not DRF's browsable API, not the Django admin, no script errors."""
    html = page.content()
    assert "/admin/" not in page.url
    assert "Django administration" not in html and "Django site admin" not in html
    assert "rest_framework" not in html and "Django REST framework" not in html
    assert page.js_errors == [], page.js_errors
    if SHOTS and name:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def nav(page, title: str):  # noqa: F811
    page.get_by_role("navigation", name="Project").get_by_role("link", name=title, exact=True).click()


def join(browser, live_server, link: str, username: str):  # noqa: F811
    """The invitee opens their link in their own browser and creates their account."""
    context = browser.new_context(base_url=live_server.url)
    other = context.new_page()
    other.goto(link)
    expect(other.get_by_role("heading", name=re.compile("^Join "))).to_be_visible()
    other.get_by_label("Username").fill(username)
    other.get_by_label("Password", exact=True).fill(PASSPHRASE)
    other.get_by_label("Password, again").fill(PASSPHRASE)
    other.get_by_role("button", name="Create account and join").click()
    expect(other.get_by_role("heading", name="Your projects")).to_be_visible()
    context.close()


def invite(page, role: str, note: str) -> str:  # noqa: F811
    page.get_by_label("Role", exact=True).select_option(role)
    page.get_by_label("Who it is for").fill(note)
    page.get_by_role("button", name="Create invitation link").click()
    link = page.locator("#invitation-url").inner_text().strip()
    assert "/invitations/" in link
    return link


def admins_group() -> Group:
    """The site's admins group as migration annotation.0002 makes it: a transactional test
    before this one flushes every table, the group and its permissions too."""
    group, _ = Group.objects.get_or_create(name=ADMINS_GROUP)
    for perm in GROUP_PERMISSIONS[ADMINS_GROUP]:
        app_label, codename = perm.split(".")
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def test_an_admin_runs_a_project_from_the_home_page(page, browser, live_server, celery_worker):
    admin = UserFactory(username="lead")
    admin.groups.add(admins_group())
    log_in(page, "lead")
    checked(page)

    # create a project
    page.get_by_role("link", name="New project").click()
    page.get_by_label("Name").fill("News topics")
    page.get_by_label("Labels").fill("World\nSports\nBusiness")
    page.get_by_label("Instructions").fill("Choose the topic of the headline.")
    checked(page, "project-create")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Import texts into News topics")).to_be_visible()
    project = Project.objects.get(name="News topics")

    # import texts (the worker imports them; the page follows until it is done)
    page.get_by_label("File").set_input_files(
        files=[{"name": "news.csv", "mimeType": "text/csv", "buffer": CSV.encode()}]
    )
    page.get_by_label("Label column").fill("label")
    page.get_by_role("button", name="Upload and import").click()
    expect(page.locator("#import-batches tr[data-status=succeeded]")).to_have_count(1, timeout=60_000)
    assert Example.objects.filter(project=project).count() == 6
    checked(page, "import")

    # set a pay policy: preview first, then save
    nav(page, "Pay")
    page.get_by_label("Piece rate").fill("0.02")
    page.get_by_label("Floor per hour worked").fill("12")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-below-floor")).to_be_visible()
    assert not PayPolicy.objects.filter(project=project).exists()
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#pay-versions tr[data-version='1']")).to_be_visible()
    checked(page, "pay")

    # two annotators and an auditor, each through their own invitation link
    nav(page, "Members")
    for username, role in (("kim", "annotator"), ("lee", "annotator"), ("ada", "auditor")):
        link = invite(page, role, username)
        join(browser, live_server, link, username)
        page.reload()
    expect(page.locator("#member-table tr[data-member]")).to_have_count(4)
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"lead": "admin", "kim": "annotator", "lee": "annotator", "ada": "auditor"}
    checked(page, "members")

    # trigger a retrain and watch the run (no labels yet: it fails, and says why)
    nav(page, "Models")
    page.get_by_role("button", name="Retrain now").click()
    # (the notice "Training run N is queued." may be gone already: the page reloads when the run ends)
    expect(page.locator("#runs tr[data-run-id]")).to_have_count(1)
    run = TrainingRun.objects.get(project=project)
    expect(page.locator(f"#run-{run.pk}")).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(page.locator(f"#run-{run.pk} .run-error")).not_to_be_empty()
    checked(page, "models")

    # the dashboard says what is going on
    nav(page, "Dashboard")
    expect(page.locator("#fig-texts")).to_have_text("6")
    expect(page.locator("#annotator-table tr[data-annotator]")).to_have_count(3)  # kim, lead, lee
    checked(page, "dashboard")

    # verify the ledger
    nav(page, "Ledger")
    page.get_by_role("button", name="Verify the ledger").click()
    expect(page.locator("#verification-result")).to_contain_text("check out")
    assert LedgerVerification.objects.get(project=project).ok
    checked(page, "ledger")

    # and the pages an admin reaches from here are ours too
    nav(page, "Labor Cards")
    checked(page, "labor-cards")
    page.get_by_role("link", name="Tally", exact=True).click()
    expect(page.locator("tr[data-project='news-topics'] progress")).to_be_visible()
    checked(page, "home")
