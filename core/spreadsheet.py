"""Cells a spreadsheet shows as text and never runs as a formula (CSV injection)."""

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """A text cell that starts like a formula gets a leading quote; numbers stay numbers (a
    negative amount is a number to a spreadsheet, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_safe_frame(frame):
    """`csv_safe` over every text cell of a pandas frame, vectorised."""
    out = frame.copy()
    pattern = "^[" + "".join("\\" + c if c in "-\\^]" else c for c in FORMULA_TRIGGERS) + "]"
    for column in out.columns:
        series = out[column]
        is_text = series.map(lambda v: isinstance(v, str))
        if is_text.any():
            risky = is_text & series.where(is_text, "").str.contains(pattern, regex=True)
            out[column] = series.where(~risky, "'" + series.where(is_text, ""))
    return out
