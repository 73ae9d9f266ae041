"""Helpers shared by the ledger tests: drive annotation.services with an explicit clock."""

from decimal import Decimal

from django.db.models import Sum

from annotation import services as annotation_services
from labor_ledger.models import LedgerEntry


def work(project, annotator, *, start, active_seconds=10, label=None, key=None, skip=False):
    """Claim, show, heartbeat every 5 s for `active_seconds`, then submit (or skip). Returns
    (attempt, annotation or None) and the moment it finished."""
    attempt = annotation_services.claim_next(project=project, annotator=annotator, now=start)
    annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start)
    t = 0
    while t + 5 <= active_seconds:
        t += 5
        annotation_services.attempt_heartbeat(attempt_id=attempt.pk, annotator=annotator, now=start + _s(t))
    end = start + _s(active_seconds)
    if skip:
        annotation_services.attempt_skip(attempt_id=attempt.pk, annotator=annotator, now=end)
        attempt.refresh_from_db()
        return attempt, None
    label = label or project.labels.first()
    annotation = annotation_services.annotation_submit(
        attempt_id=attempt.pk, annotator=annotator, label_ids=[label.pk], idempotency_key=key, now=end
    )
    attempt.refresh_from_db()
    return attempt, annotation


def _s(seconds):
    from datetime import timedelta

    return timedelta(seconds=seconds)


def net(qs, field="amount"):
    return qs.aggregate(total=Sum(field))["total"] or Decimal(0)


def live_pay(annotation):
    """Piece pay entries on this annotation that no reversal cancels."""
    return LedgerEntry.objects.filter(annotation=annotation, kind=LedgerEntry.Kind.PIECE_PAY, reversed_by__isnull=True)
