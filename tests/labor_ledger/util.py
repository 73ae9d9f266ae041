"""Helpers shared by the ledger tests: a clock the tests drive, and sums over the ledger."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum

from labor_ledger.models import LedgerEntry

# A fixed Monday noon, far from midnight: tests that cross periods say so with at(hours=...).
T0 = datetime(2030, 1, 7, 12, 0, 0, tzinfo=UTC)


def at(seconds: float = 0, *, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, hours=hours, days=days)


def net(qs, field="amount"):
    return qs.aggregate(total=Sum(field))["total"] or Decimal(0)


def live_pay(annotation):
    """Piece pay entries on this annotation that no reversal cancels."""
    return LedgerEntry.objects.filter(annotation=annotation, kind=LedgerEntry.Kind.PIECE_PAY, reversed_by__isnull=True)
