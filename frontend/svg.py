"""Inline SVG that our Content-Security-Policy (style-src 'self', no inline styles) renders.

matplotlib writes `style="fill: #fff; stroke-width: 0.8"` attributes and a `<style>` element;
the browser refuses both under our CSP, and charts lose their colours. The same properties
as SVG presentation attributes (`fill="#fff" stroke-width="0.8"`) are not styles, so they
render, and no `unsafe-inline` is needed.
"""

import re

_STYLE_ELEMENT = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="([^"]*)"')
_SVG_OPEN = re.compile(r"<svg\b")
_SAFE_NAME = re.compile(r"^[a-z-]+$")


def _declarations(css: str) -> list[tuple[str, str]]:
    pairs = []
    for declaration in css.split(";"):
        name, _, value = declaration.partition(":")
        name, value = name.strip(), value.strip()
        if _SAFE_NAME.match(name) and value and '"' not in value:
            pairs.append((name, value))
    return pairs


def _attributes(pairs: list[tuple[str, str]]) -> str:
    return "".join(f' {name}="{value}"' for name, value in pairs)


def csp_safe_svg(svg: str) -> str:
    """Rewrite style attributes and a global `*{...}` style rule as presentation attributes."""
    root_pairs: list[tuple[str, str]] = []
    for rule in _STYLE_ELEMENT.findall(svg):
        match = re.match(r"\s*\*\s*\{(.*)\}\s*$", rule, re.S)
        if match:  # matplotlib's only rule: defaults for every element, which SVG inherits
            root_pairs.extend(_declarations(match.group(1)))
    svg = _STYLE_ELEMENT.sub("", svg)
    svg = _STYLE_ATTRIBUTE.sub(lambda m: _attributes(_declarations(m.group(1))), svg)
    if root_pairs:
        svg = _SVG_OPEN.sub("<svg" + _attributes(root_pairs), svg, count=1)
    return svg
