"""A toy project ready to train (hashed model) with a little paid work on it, and what the
ledger says about it: the reliability tests' world."""

from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.utils import timezone

from annotation.models import Membership
from labor_ledger import selectors as ledger_selectors
from labor_ledger import services as ledger_services
from labor_ledger.models import LedgerEntry
from tests.factories import UserFactory, add_examples, add_member, make_project
from tests.support.annotators import label_next
from training import services as training_services


def make_toy_project(admin, toy, *, labeled=12):
    project = make_project(admin=admin, name="Toy", labels=("positive", "negative"))
    add_examples(project, list(toy))
    # Automatic retraining off while the fixture labels: no run is queued (nor a message sent)
    # unless a test asks for one.
    training_services.config_update(
        project=project, model_kind="hashed", holdout_share=0.25, min_labels=4, enabled=False
    )
    start = timezone.now() - timedelta(hours=1)
    ledger_services.pay_policy_create(
        project=project, created_by=admin, piece_rate=Decimal("0.10"), effective_from=start, now=start
    )
    annotator = add_member(project, Membership.Role.ANNOTATOR, UserFactory(username="lab"))
    label_next(project, annotator, toy, labeled)
    return project, annotator


def ledger_totals(project) -> dict:
    """What the ledger says: per annotator, entries, amount and examples; and that it verifies."""
    rows = (
        LedgerEntry.objects.filter(project=project)
        .values("annotator_id")
        .annotate(n=Count("id"), amount=Sum("amount"), units=Sum("units"))
        .order_by("annotator_id")
    )
    verified = ledger_selectors.ledger_verify(project=project)
    assert verified.ok, verified.problems
    return {r["annotator_id"]: (r["n"], r["amount"], r["units"]) for r in rows}
