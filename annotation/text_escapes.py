"""Text clean-ups for known dataset conventions. Pure Python: no Django, usable by scripts.

AG's News (the demo's source) writes its text with backslashes. Its README says a newline is
a backslash followed by `n`, but the file itself shows otherwise: a backslash alone marks a
wrapped line (`competing for\\privately funded`), two backslashes a paragraph break
(`distribution.\\\\I think`), and a backslash before punctuation escapes it (`\\$1 billion`).
`\\n` only ever appears before a word that starts with n (`social\\network`), so reading it
as a newline would damage the text.
"""

import html
import re

_BACKSLASH = re.compile(r"\\(\\|[^\w\s\\])?")


def _backslash_repl(match: re.Match) -> str:
    escaped = match.group(1)
    if escaped is None:
        return " "  # a wrapped line
    if escaped == "\\":
        return "\n"  # a paragraph break
    return escaped  # \$ -> $, \" -> "


def unescape_backslashes(text: str) -> str:
    """`\\\\` -> newline, `\\` + punctuation -> the punctuation, any other `\\` -> a space."""
    if "\\" not in text:
        return text
    return _BACKSLASH.sub(_backslash_repl, text)


# AG's News lost the `&` of numeric HTML entities: "it #39;s" was "it&#39;s".
_STRIPPED_ENTITY = re.compile(r" ?#(\d{2,4});")


def _entity_repl(match: re.Match) -> str:
    code = int(match.group(1))
    if 128 <= code <= 159:  # Windows-1252 punctuation written as a numeric entity
        return bytes([code]).decode("cp1252", errors="replace")
    return chr(code)


def repair_stripped_entities(text: str) -> str:
    """Restore `#39;`-style entities whose `&` was lost, then decode `&lt;`-style entities."""
    return html.unescape(_STRIPPED_ENTITY.sub(_entity_repl, text))
