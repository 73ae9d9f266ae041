"""The small pure pieces: entry precision, minor units, periods, display filters."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from labor_ledger import money, periods
from labor_ledger.templatetags import ledger_format


def test_entries_keep_six_decimals_rounded_half_up():
    assert money.entry_amount(Decimal("0.0000005")) == Decimal("0.000001")
    assert money.entry_amount(Decimal("0.0000004999")) == Decimal("0")
    assert money.hourly(Decimal("12"), Decimal("1")) == Decimal("0.003333")
    assert money.hourly(Decimal("7.25"), Decimal("3600")) == Decimal("7.25")


@pytest.mark.parametrize(("currency", "unit"), [("USD", "0.01"), ("eur", "0.01"), ("JPY", "1"), ("KWD", "0.001")])
def test_minor_units(currency, unit):
    assert money.minor_unit(currency) == Decimal(unit)


def test_daily_periods_are_utc_days(settings):
    settings.TALLY_LEDGER_PERIOD = "day"
    assert periods.period_of(datetime(2030, 1, 7, 23, 59, 59, tzinfo=UTC)) == date(2030, 1, 7)
    assert periods.period_end(date(2030, 1, 7)) == datetime(2030, 1, 8, tzinfo=UTC)
    assert periods.parse_period("2030-01-07") == date(2030, 1, 7)


def test_weekly_periods_start_on_monday(settings):
    settings.TALLY_LEDGER_PERIOD = "week"
    assert periods.period_of(datetime(2030, 1, 13, 12, tzinfo=UTC)) == date(2030, 1, 7)  # a Sunday
    assert periods.next_period(date(2030, 1, 7)) == date(2030, 1, 14)
    settings.TALLY_LEDGER_PERIOD = "month"
    with pytest.raises(ValueError, match="day"):
        periods.period_of(datetime(2030, 1, 13, tzinfo=UTC))


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [("0.100000", "USD", "0.10"), ("0.333333", "USD", "0.333333"), ("12", "USD", "12.00"), ("5", "JPY", "5")],
)
def test_rates_show_their_precision_and_at_least_the_minor_unit(value, currency, shown):
    assert ledger_format.rate(Decimal(value), currency) == shown


def test_display_filters():
    assert ledger_format.money_minor(Decimal("1.005"), "USD") == "1.01"
    assert ledger_format.hours(Decimal("5400")) == "1.50"
    assert ledger_format.category_labels(["skipped", "instruction_reading"]) == "skipped, reading the instructions"
    assert ledger_format.category_labels([]) == "nothing"
