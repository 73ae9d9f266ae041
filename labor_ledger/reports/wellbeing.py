"""Wellbeing on the Labor Card and the datasheet (issue 17, docs/welfare.md): what exposure to
sensitive content, and what breaks, went into a model version. Reads only.

Scope: the project's labor booked before the version's training snapshot (the labor that
produced the data it was trained on, skipped texts included: reading a text is the exposure).
Exposure is the active time of the ledger's time entries (signed, so a reversal cancels what
it reverses) on attempts whose text carries a sensitive mark; a text with two categories
counts in each category, and once in the total. Paid breaks are the ledger's `break` entries;
breaks taken come from the break records (an unpaid break writes no ledger row).
"""

from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncDate

from annotation.models import Break, SensitiveCategory, SensitiveMark
from labor_ledger.models import LedgerEntry, TimeCategory

Kind = LedgerEntry.Kind
TIME_KINDS = [Kind.HOURLY_PAY, Kind.WORK_TIME, Kind.UNPAID_TIME]
ZERO = Decimal(0)


def _hours(seconds) -> float:
    return round(float(seconds or 0) / 3600, 4)


def attempt_time(project_id: int, before):
    """The live time entries of attempts, booked before `before` (reversals count negatively)."""
    return (
        LedgerEntry.objects.filter(project_id=project_id, occurred_at__lt=before, attempt_id__isnull=False)
        .filter(Q(kind__in=TIME_KINDS) | Q(kind=Kind.REVERSAL, reversed_kind__in=TIME_KINDS))
        .exclude(time_category=TimeCategory.BETWEEN_TASKS)
    )


def _marked(category: str | None = None):
    marks = SensitiveMark.objects.filter(example_id=OuterRef("attempt__example_id"))
    if category:
        marks = marks.filter(category=category)
    return Exists(marks)


def wellbeing_section(*, project_id: int, before) -> dict:
    entries = attempt_time(project_id, before)
    exposed = entries.filter(_marked())
    total = exposed.aggregate(s=Sum("active_seconds"))["s"] or ZERO
    by_category = []
    for value, label in SensitiveCategory.choices:
        seconds = entries.filter(_marked(value)).aggregate(s=Sum("active_seconds"))["s"] or ZERO
        if seconds:
            by_category.append({"category": value, "label": label, "hours": _hours(seconds)})
    people = exposed.values("annotator_id").annotate(s=Sum("active_seconds")).filter(s__gt=0).count()
    daily = (
        exposed.annotate(day=TruncDate("occurred_at"))
        .values("annotator_id", "day")
        .annotate(s=Sum("active_seconds"))
        .order_by("-s")
        .values_list("s", flat=True)
        .first()
    )
    skipped = entries.filter(time_category=TimeCategory.SENSITIVE_SKIPPED).aggregate(s=Sum("active_seconds"))["s"]
    breaks = Break.objects.filter(project_id=project_id, ended_at__isnull=False, ended_at__lt=before)
    taken = breaks.aggregate(s=Sum("credited_seconds"))["s"] or ZERO
    paid = LedgerEntry.objects.filter(
        project_id=project_id, occurred_at__lt=before, time_category=TimeCategory.BREAK
    ).aggregate(s=Sum("counted_seconds"))["s"]
    return {
        "exposure_hours": _hours(total),
        "exposure_by_category": by_category,
        "people_exposed": people,
        "highest_daily_exposure_hours": _hours(daily or 0),
        "sensitive_skipped_hours": _hours(skipped),
        "breaks_taken": breaks.count(),
        "break_hours_taken": _hours(taken),
        "break_hours_paid": _hours(paid),
    }
