"""Checks on server-rendered pages that several test directories share."""

import re


def nav_keys(html: str) -> list[str]:
    return re.findall(r'data-nav="([a-z-]+)"', html)


def assert_no_inline_script(html: str) -> None:
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE)
    assert not re.search(r"\sstyle\s*=", html, flags=re.IGNORECASE)
