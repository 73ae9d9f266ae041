"""Display of money and time on the earnings pages. Display only: the ledger keeps full precision."""

from decimal import ROUND_HALF_UP, Decimal

from django import template

from labor_ledger import money

register = template.Library()


@register.filter
def money_minor(value, currency: str = "USD") -> str:
    """An amount rounded half up to the currency's minor unit, e.g. 12.35."""
    if value is None or value == "":
        return "–"
    return str(Decimal(value).quantize(money.minor_unit(currency), rounding=ROUND_HALF_UP))


@register.filter
def money_full(value) -> str:
    """An entry's amount as the ledger keeps it (6 decimal places)."""
    if value is None or value == "":
        return "–"
    return money.fmt_amount(Decimal(value))


@register.filter
def hours(seconds) -> str:
    """Seconds as hours with two decimals, e.g. 1.25."""
    if seconds is None or seconds == "":
        return "–"
    return str((Decimal(seconds) / money.SECONDS_PER_HOUR).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@register.filter
def secs(seconds) -> str:
    if seconds is None or seconds == "":
        return "–"
    return str(Decimal(seconds).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
