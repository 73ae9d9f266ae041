"""The agreement page in Chromium, as an admin meets it: from the dashboard's link to the
figures (each with its interval and n), the period switch and the CSV export. The figures on
the page are checked against what the labels give by hand, not against the page's own code."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from annotation.models import Membership
from tests.factories import UserFactory, add_member
from tests.support.annotators import work
from tests.support.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_reads_agreement_and_exports_it(page, labeling):
    project, kim = labeling
    admin = project.memberships.get(role="admin").user
    lee = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="lee"))
    project.annotations_per_example = 2
    project.save(update_fields=["annotations_per_example"])
    labels = {label.name: label for label in project.labels.all()}
    start = timezone.now() - timedelta(minutes=10)
    # four texts, each labeled by both: three agreed, one disputed -> raw agreement 3/4
    plan = [("World", "World"), ("Business", "Business"), ("Sci-Tech", "Sci-Tech"), ("World", "Sports")]
    for n, (kim_says, lee_says) in enumerate(plan):
        work(project, kim, start=start + timedelta(seconds=40 * n), label=labels[kim_says])
        work(project, lee, start=start + timedelta(seconds=40 * n + 20), label=labels[lee_says])

    log_in(page, admin.username)
    page.goto(reverse("console:dashboard", args=[project.slug]))
    page.locator("#agreement-link").click()
    expect(page.locator("#agreement-page")).to_be_visible()
    raw = page.locator('#agreement-table tr[data-measure="percent_agreement"]')
    expect(raw).to_contain_text("0.750")
    expect(raw).to_contain_text("n = 4 texts, 4 pairs")
    alpha = page.locator('#agreement-table tr[data-measure="alpha"]')
    # an interval or the plain reason there is none, never a bare number
    expect(alpha.locator("span.muted").first).to_be_visible()
    expect(page.locator("#agreement-annotators tbody tr")).to_have_count(2)
    expect(page.locator("#agreement-pairs tbody tr")).to_have_count(1)
    expect(page.locator("#agreement-pairs tbody tr")).to_contain_text("0.750")

    page.get_by_role("link", name="month").click()
    expect(page.get_by_role("link", name="month")).to_have_attribute("aria-current", "true")
    expect(page.locator("#agreement-periods")).to_contain_text("Month from")

    with page.expect_download() as info:
        page.locator("#agreement-csv").click()
    rows = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    project_raw = [r for r in rows if r["scope"] == "project" and r["measure"] == "percent_agreement"]
    assert len(project_raw) == 1 and float(project_raw[0]["value"]) == pytest.approx(0.75)
    assert project_raw[0]["n_texts"] == "4"
    assert page.js_errors == []
