"""The Import, Pay and Ledger pages per role, and what their forms do."""

import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotation.models import ImportBatch
from labor_ledger.models import LedgerVerification, PayPolicy
from tests.support.annotators import work
from tests.support.pages import assert_no_inline_script

pytestmark = pytest.mark.django_db


def test_import_page_per_role_and_upload(client_for, project, annotator, auditor, admin_user, other_admin):
    url = reverse("console:import", args=[project.slug])
    assert client_for(auditor).get(url).status_code == 403
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(other_admin).get(url).status_code == 404
    html = client_for(admin_user).get(url).content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert_no_inline_script(html)
    upload = SimpleUploadedFile("reviews.csv", b"text,label\nGreat film,positive\nDull,negative\n")
    response = client_for(admin_user).post(url, {"file": upload, "text_column": "text", "label_column": "label"})
    assert response.status_code == 302
    batch = ImportBatch.objects.get(project=project)
    assert batch.source_name == "reviews.csv" and batch.label_column == "label"
    wrong = SimpleUploadedFile("bad.csv", b"body\nx\n")
    response = client_for(admin_user).post(url, {"file": wrong, "text_column": "text"})
    assert response.status_code == 400 and "text" in response.content.decode()
    assert ImportBatch.objects.count() == 1


def test_pay_page_previews_without_saving_then_saves_a_version(client_for, project, annotator, admin_user, examples):
    for i in range(3):  # three labels of 20 active seconds: 180 labels an hour
        work(project, annotator, start=_now(i), active_seconds=20)
    url = reverse("console:pay", args=[project.slug])
    form = {"piece_rate": "0.05", "hourly_rate": "0", "floor_hourly_rate": "12", "note": "first"}
    html = client_for(admin_user).post(url, {**form, "action": "preview"}).content.decode()
    assert "median of <strong>20.0 s</strong>" in html
    assert '<strong id="preview-piece">9.00</strong>' in html
    assert 'id="preview-below-floor"' in html
    assert not PayPolicy.objects.exists()
    response = client_for(admin_user).post(url, {**form, "action": "save"})
    assert response.status_code == 302
    policy = PayPolicy.objects.get(project=project)
    assert (policy.version, policy.piece_rate, policy.floor_hourly_rate) == (1, Decimal("0.05"), Decimal("12"))
    html = client_for(admin_user).get(url).content.decode()
    assert 'data-version="1"' in html and "(in force)" in html
    assert_no_inline_script(html)


def test_pay_page_per_role(client_for, project, annotator, auditor, other_admin):
    url = reverse("console:pay", args=[project.slug])
    html = client_for(auditor).get(url).content.decode()
    assert 'id="pay-form"' not in html
    assert client_for(auditor).post(url, {"piece_rate": "1", "action": "save"}).status_code == 403
    assert client_for(annotator).get(url).status_code == 403
    assert client_for(other_admin).get(url).status_code == 404
    assert not PayPolicy.objects.exists()


def test_ledger_page_verify_settle_and_filters(client_for, project, annotator, auditor, admin_user, examples):
    work(project, annotator, start=_now(0), active_seconds=10)
    work(project, annotator, start=_now(1), active_seconds=10, skip=True)
    url = reverse("console:ledger", args=[project.slug])
    html = client_for(auditor).get(url).content.decode()
    assert "Not verified from the console yet." in html and 'id="settle"' not in html
    page = client_for(auditor).post(reverse("console:ledger-verify", args=[project.slug]), follow=True)
    html = page.content.decode()
    assert "The ledger checks out" in html and "the chain, balances and settlements check out" in html
    verification = LedgerVerification.objects.get(project=project)
    assert verification.ok and verification.verified_by == auditor and verification.entries >= 2
    assert client_for(auditor).post(reverse("console:ledger-settle", args=[project.slug])).status_code == 403
    response = client_for(admin_user).post(reverse("console:ledger-settle", args=[project.slug]), follow=True)
    assert "Settled" in response.content.decode()
    html = client_for(admin_user).get(url, {"category": "skipped"}).content.decode()
    assert "Skipped" in html and "Submitted (accepted label)" not in html.split('id="ledger-entries"')[1]
    assert_no_inline_script(html)
    assert client_for(annotator).get(url).status_code == 403


def test_ledger_entries_page_by_sequence(client_for, project, annotator, admin_user, examples, monkeypatch):
    from frontend.console import selectors

    monkeypatch.setattr(selectors, "LEDGER_PAGE", 2)
    for i in range(3):
        work(project, annotator, start=_now(i), active_seconds=5)
    html = client_for(admin_user).get(reverse("console:ledger", args=[project.slug])).content.decode()
    assert 'id="older-entries"' in html
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]
    assert len(seqs) == 2 and seqs[0] > seqs[1]
    older = client_for(admin_user).get(reverse("console:ledger", args=[project.slug]), {"before": seqs[1]})
    assert all(int(s) < seqs[1] for s in re.findall(r'data-seq="(\d+)"', older.content.decode()))


def test_verify_needs_csrf(project, auditor):
    client = Client(enforce_csrf_checks=True)
    client.force_login(auditor)
    assert client.post(reverse("console:ledger-verify", args=[project.slug])).status_code == 403
    assert not LedgerVerification.objects.exists()


def _now(i):
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now().replace(microsecond=0) - timedelta(hours=1) + timedelta(minutes=i)
