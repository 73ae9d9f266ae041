"""The console per role in headless Chromium, clicking only links and buttons from the home
page (the login form is the one address typed): the admin changes the settings (instructions
with their preview, overlap, a label added, renamed and retired, the QC share), previews a
bulk accept, accepts and undoes it, and settles the ledger; the annotator labels (the retired
label is not offered) and reads their earnings; the auditor reads the dashboard, settings,
bulk-accept preview, ledger and an annotator's earnings without a button that writes. No page
on any path is a DRF browsable-API page or the Django admin.

With TALLY_CONSOLE_SCREENSHOTS=docs/console the admin's walk saves settings.png, accept.png
and accept-undone.png (docs/console.md shows them)."""

import pytest
from playwright.sync_api import expect

from annotation import services as annotation_services
from annotation.models import Annotation, Label, Membership
from tests.factories import UserFactory, add_member, make_project
from tests.frontend.test_console_browser import checked, nav
from tests.frontend.test_console_settings_accept import build_predicted
from tests.support.browser import log_in
from training import selectors as training_selectors
from training.models import AcceptBatch

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(db):
    lead = UserFactory(username="lead")
    project = make_project(admin=lead, name="Reviews", labels=("positive", "negative", "mixed"))
    kim = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="kim"))
    ada = add_member(project, Membership.Role.AUDITOR, UserFactory(username="ada"))
    data = build_predicted(project)
    return {**data, "lead": lead, "kim": kim, "ada": ada}


def open_project(page, name="Reviews"):
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("navigation", name="Project")).to_be_visible()


def test_admin_changes_settings_then_accepts_and_undoes_predictions(page, world):
    project = world["project"]
    log_in(page, "lead")
    checked(page)
    open_project(page)
    checked(page)

    # settings: instructions with a live preview, overlap, labels, QC share
    nav(page, "Settings")
    expect(page.locator("#overlap-now")).to_have_text("1")
    page.get_by_label("Instructions").fill("Is the review positive?\n\nMixed reviews: choose the stronger side.")
    expect(page.locator("#instructions-preview p")).to_have_count(2)
    expect(page.locator("#instructions-preview")).to_contain_text("choose the stronger side")
    page.get_by_label("Annotators per text (overlap)").fill("2")
    page.get_by_role("button", name="Save project settings").click()
    expect(page.locator("#overlap-now")).to_have_text("2")
    page.get_by_label("New label", exact=True).fill("off-topic")
    page.get_by_role("button", name="Add label").click()
    expect(page.locator("#labels tr[data-label='off-topic']")).to_be_visible()
    page.get_by_label("New name of mixed").fill("ambivalent")
    page.get_by_role("button", name="Rename mixed").click()
    expect(page.locator("#labels tr[data-label='ambivalent']")).to_be_visible()
    page.get_by_role("button", name="Retire off-topic").click()
    expect(page.locator("#labels tr[data-label='off-topic']")).to_have_attribute("data-retired", "yes")
    page.get_by_label("Quality-control share").fill("0.2")
    page.get_by_role("button", name="Save quality control").click()
    expect(page.locator("#qc-now")).to_have_text("0.2")
    checked(page, "settings")
    project.refresh_from_db()
    assert project.annotations_per_example == 2 and "stronger side" in project.instructions
    assert Label.objects.get(project=project, name="off-topic").retired
    assert training_selectors.training_config(project=project).qc_share == 0.2

    # bulk accept: preview, accept, undo
    nav(page, "Models")
    page.get_by_role("link", name="Bulk accept predictions").click()
    page.get_by_label("Confidence at least").fill("0.9")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#accept-count")).to_have_text("9")
    expect(page.locator("#accept-accuracy")).to_contain_text("0.750")
    expect(page.locator("#accept-distribution tbody tr")).to_have_count(2)
    expect(page.locator("#accept-sample tbody tr")).to_have_count(9)
    checked(page, "accept")
    page.get_by_role("button", name="Accept 9 machine labels").click()
    expect(page.locator("#accept-batches tr[data-batch]")).to_have_count(1)
    batch = AcceptBatch.objects.get(project=project)
    assert batch.accepted == 9 and batch.annotations.filter(status=Annotation.Status.ACCEPTED).count() == 9
    page.get_by_role("button", name=f"Undo bulk accept {batch.pk}").click()
    expect(page.locator(f"#batch-{batch.pk}")).to_have_attribute("data-undone", "yes")
    checked(page, "accept-undone")
    assert set(batch.annotations.values_list("status", flat=True)) == {Annotation.Status.REJECTED}

    # the ledger: verify and settle
    nav(page, "Ledger")
    page.get_by_role("button", name="Verify the ledger").click()
    expect(page.locator("#verification-result")).to_contain_text("check out")
    page.get_by_role("button", name="Settle ended periods").click()
    expect(page.get_by_text("annotator-period(s)")).to_be_visible()
    checked(page)
    page.get_by_role("link", name="Tally", exact=True).click()
    checked(page)


def test_annotator_labels_without_the_retired_label_and_reads_their_earnings(page, world):
    project = world["project"]
    mixed = project.labels.get(name="mixed")
    annotation_services.label_retire(project=project, label_id=mixed.pk)
    log_in(page, "kim")
    checked(page)
    expect(page.get_by_role("link", name="Reviews", exact=True)).to_have_count(0)  # no console for annotators
    page.get_by_role("link", name="Label Reviews").click()
    expect(page.locator("#text")).to_have_attribute("aria-busy", "false", timeout=15_000)
    names = page.locator("#labels .label-name").all_inner_texts()
    assert names == ["positive", "negative"]
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#labeled-count")).to_have_text("1", timeout=15_000)
    checked(page)
    nav(page, "Earnings")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    checked(page)
    keys = page.get_by_role("navigation", name="Project").get_by_role("link").all_inner_texts()
    assert [k.strip() for k in keys if k.strip()][-2:] == ["Label", "Earnings"]
    page.get_by_role("link", name="Tally", exact=True).click()
    checked(page)


def test_auditor_reads_every_page_and_finds_no_button_that_writes(page, world):
    log_in(page, "ada")
    open_project(page)
    checked(page)
    page.get_by_role("link", name="Earnings of kim").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    checked(page)
    nav(page, "Settings")
    expect(page.locator("#qc-now")).to_be_visible()
    for button in ("Save project settings", "Add label", "Save quality control"):
        expect(page.get_by_role("button", name=button)).to_have_count(0)
    expect(page.locator("#labels button")).to_have_count(0)
    checked(page)
    nav(page, "Models")
    page.get_by_role("link", name="Bulk accept predictions").click()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#accept-count")).to_be_visible()
    expect(page.locator("#accept-form")).to_have_count(0)
    checked(page)
    nav(page, "Ledger")
    page.get_by_role("button", name="Verify the ledger").click()  # auditors may: it changes no books
    expect(page.locator("#verification-result")).to_contain_text("check out")
    expect(page.get_by_role("button", name="Settle ended periods")).to_have_count(0)
    checked(page)
    nav(page, "Labor Cards")
    checked(page)
