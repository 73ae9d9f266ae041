"""Durations as people type and read them: h:mm:ss, m:ss, or plain seconds."""

import re
from decimal import Decimal, InvalidOperation

_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d{1,3})?)$")


def parse_duration(text: str) -> Decimal:
    """Seconds from "1:02:03", "12:30" or "95" (seconds). Raises ValueError, saying why."""
    text = (text or "").strip()
    if text.startswith("-"):
        raise ValueError("A duration cannot be negative.")
    match = _CLOCK.match(text)
    if match:
        hours, minutes, seconds = match.groups()
        if int(minutes) >= 60 and hours is not None or Decimal(seconds) >= 60:
            raise ValueError("Write minutes and seconds below 60, as h:mm:ss or m:ss.")
        return Decimal(int(hours or 0) * 3600 + int(minutes) * 60) + Decimal(seconds)
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError("Write the duration as h:mm:ss, m:ss or a number of seconds.") from exc
    if not value.is_finite():
        raise ValueError("Write the duration as h:mm:ss, m:ss or a number of seconds.")
    return value


def fmt_duration(seconds) -> str:
    """h:mm:ss, or m:ss under an hour (whole seconds, rounded half up)."""
    total = int(Decimal(seconds or 0).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    sign = "-" if total < 0 else ""
    hours, rest = divmod(abs(total), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}" if hours else f"{sign}{minutes}:{secs:02d}"
