"""Settlement periods: UTC days by default (TALLY_LEDGER_PERIOD = "day" or "week").

A period is named by its first UTC date; it runs from that date's midnight UTC to the next
period's. This module is the one place that knows how long a period is.
"""

from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings


def _kind() -> str:
    kind = getattr(settings, "TALLY_LEDGER_PERIOD", "day")
    if kind not in ("day", "week"):
        raise ValueError(f"TALLY_LEDGER_PERIOD must be 'day' or 'week', not {kind!r}")
    return kind


def period_length() -> timedelta:
    return timedelta(days=7) if _kind() == "week" else timedelta(days=1)


def period_of(moment: datetime) -> date:
    """The period containing `moment` (an aware datetime), named by its first UTC date."""
    day = moment.astimezone(UTC).date()
    if _kind() == "week":
        day -= timedelta(days=day.weekday())  # ISO weeks start on Monday
    return day


def period_start(period: date) -> datetime:
    return datetime.combine(period, time.min, tzinfo=UTC)


def period_end(period: date) -> datetime:
    return period_start(period) + period_length()


def next_period(period: date) -> date:
    return period + period_length()


def parse_period(text: str) -> date:
    """A period from 'YYYY-MM-DD' (any date inside it)."""
    return period_of(datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC))
