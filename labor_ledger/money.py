"""Money and time arithmetic for the ledger: one place for every rounding rule.

The rule (docs/ledger.md, "Rounding"):

* Entries keep full precision: amounts are quantized to 6 decimal places (ROUND_HALF_UP),
  seconds to 3 (the precision annotation.Attempt measures them in).
* Money is rounded once, at settlement, to the currency's minor unit (cents for USD, none
  for JPY, mills for BHD) with ROUND_HALF_UP; the difference is written to the ledger as a
  `rounding` adjustment, so a settled period's entries add up to exactly what is paid.
* Rounding never takes anyone below the floor: when half-up rounding would land below the
  period's floor target, the payable is rounded up (ROUND_CEILING) instead.
"""

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

ENTRY_QUANTUM = Decimal("0.000001")
SECONDS_QUANTUM = Decimal("0.001")
ZERO = Decimal("0")
SECONDS_PER_HOUR = Decimal(3600)

# ISO 4217 minor units that are not 2. Every other code rounds to cents.
_MINOR_UNIT_EXCEPTIONS = {
    "BHD": 3,
    "BIF": 0,
    "CLF": 4,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "UYW": 4,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}


def minor_unit_exponent(currency: str) -> int:
    return _MINOR_UNIT_EXCEPTIONS.get(currency.upper(), 2)


def minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit_exponent(currency))


def entry_amount(value: Decimal) -> Decimal:
    """An amount as an entry keeps it: 6 decimal places, half up."""
    return Decimal(value).quantize(ENTRY_QUANTUM, rounding=ROUND_HALF_UP)


def seconds(value) -> Decimal:
    return Decimal(value).quantize(SECONDS_QUANTUM, rounding=ROUND_HALF_UP)


def hourly(rate: Decimal, secs: Decimal) -> Decimal:
    """Pay for `secs` seconds at `rate` per hour, at entry precision."""
    return entry_amount(Decimal(rate) * Decimal(secs) / SECONDS_PER_HOUR)


def floor_top_up(*, gross: Decimal, floor: Decimal) -> Decimal:
    """What settlement tops a period up by: the floor earned (never below 0) less the period's
    pay, when that is positive. The one rule, read by settlement and by every projection of an
    open period (selectors.PeriodEarnings, and in SQL reports/sql.py PROJECTED_CTE)."""
    return max(max(Decimal(floor), ZERO) - Decimal(gross), ZERO)


def settle_rounding(*, total: Decimal, floor_target: Decimal, currency: str) -> Decimal:
    """The payable for a period: `total` rounded half up to the minor unit, or rounded up when
    half-up rounding would fall below `floor_target`."""
    unit = minor_unit(currency)
    payable = total.quantize(unit, rounding=ROUND_HALF_UP)
    if payable < floor_target:
        payable = max(total, floor_target).quantize(unit, rounding=ROUND_CEILING)
    return payable


def fmt_seconds(value: Decimal) -> str:
    """Canonical text of a seconds value (3 decimal places), for hashing."""
    return str(seconds(value))


def fmt_amount(value: Decimal) -> str:
    """Canonical text of an amount (6 decimal places), for hashing."""
    return str(entry_amount(value))
