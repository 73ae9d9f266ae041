from django import template

from labor_ledger.durations import fmt_duration

register = template.Library()


@register.filter
def hms(seconds) -> str:
    """Seconds as h:mm:ss (m:ss under an hour)."""
    return fmt_duration(seconds)
