"""Display of money and time on the earnings pages. Display only: the ledger keeps full precision."""

from decimal import ROUND_HALF_UP, Decimal

from django import template

from labor_ledger import money
from labor_ledger.models import TimeCategory

register = template.Library()


@register.filter
def money_minor(value, currency: str = "USD") -> str:
    """An amount rounded half up to the currency's minor unit, e.g. 12.35."""
    if value is None or value == "":
        return "–"
    return str(Decimal(value).quantize(money.minor_unit(currency), rounding=ROUND_HALF_UP))


@register.filter(name="money")
def money_with_currency(value, currency: str = "USD") -> str:
    """An amount as pages show it: rounded half up to the currency's minor unit, with the
    currency, e.g. "12.35 USD" (exports keep the ledger's 6 decimal places)."""
    if value is None or value == "":
        return "–"
    return f"{money_minor(value, currency)} {currency}"


@register.filter
def duration(seconds) -> str:
    """Seconds as a page shows a duration: h:mm:ss, or m:ss under an hour ("0:03" for 3.1 s),
    rounded half up to the second; "-0:05" for a negative one."""
    if seconds is None or seconds == "":
        return "–"
    total = int(Decimal(seconds).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    sign, total = ("-" if total < 0 else ""), abs(total)
    h, rest = divmod(total, 3600)
    m, sec = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{sec:02d}" if h else f"{sign}{m}:{sec:02d}"


@register.filter
def duration_hours(value) -> str:
    """Hours (a number, as the Labor Card's JSON has them) as a duration: h:mm:ss or m:ss."""
    if value is None or value == "":
        return "–"
    return duration(Decimal(str(value)) * money.SECONDS_PER_HOUR)


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


@register.filter
def rate(value, currency: str = "USD") -> str:
    """A rate with as many decimals as it has, and at least the currency's minor unit: 0.10, 0.333333."""
    if value is None or value == "":
        return "–"
    value = Decimal(value).normalize()
    places = max(money.minor_unit_exponent(currency), -value.as_tuple().exponent)
    return str(value.quantize(Decimal(1).scaleb(-places)))


@register.filter
def category_labels(values) -> str:
    """Time category codes as the words people read."""
    labels = dict(TimeCategory.choices)
    return ", ".join(str(labels.get(v, v)).lower() for v in values) or "nothing"
