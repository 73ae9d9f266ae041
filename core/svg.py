"""Server-drawn charts as inline SVG that our Content-Security-Policy renders.

matplotlib writes `style="fill: #fff; stroke-width: 0.8"` attributes and a `<style>`
element; the CSP (style-src 'self', no inline styles) refuses both and charts lose their
colours. The same properties as presentation attributes (`fill="#fff"`) are not styles, so
they render without `unsafe-inline`. Element ids get a per-chart prefix so several charts can
share one page. matplotlib is imported inside the functions: the web process pays for it only
when a chart is drawn, and torch is never loaded.
"""

import io
import re
from html import escape

_STYLE_ELEMENT = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="([^"]*)"')
_SVG_OPEN = re.compile(r"<svg\b")
_SAFE_NAME = re.compile(r"^[a-z-]+$")
_ID = re.compile(r'\bid="([^"]+)"')
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_HREF = re.compile(r'(xlink:href|href)="#([^"]+)"')


def _declarations(css: str) -> list[tuple[str, str]]:
    pairs = []
    for declaration in css.split(";"):
        name, _, value = declaration.partition(":")
        name, value = name.strip(), value.strip()
        if _SAFE_NAME.match(name) and value:
            pairs.append((name, value))
    return pairs


def _attributes(pairs: list[tuple[str, str]]) -> str:
    return "".join(f' {name}="{escape(value, quote=False).replace(chr(34), "&quot;")}"' for name, value in pairs)


def csp_safe_svg(svg: str) -> str:
    """Rewrite style attributes and matplotlib's global `*{...}` rule as presentation attributes."""
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


def inline_svg(svg: str, *, prefix: str, title: str) -> str:
    """matplotlib's SVG document as an inline <svg> element for a strict-CSP page: no prolog
    or metadata, styles as attributes, ids prefixed, and a title for screen readers."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = csp_safe_svg(svg)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _URL_REF.sub(lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    svg = _HREF.sub(lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"', svg)
    head_end = svg.index(">")
    svg = svg[:head_end] + f' role="img" aria-labelledby="{prefix}-title"' + svg[head_end:]
    head_end = svg.index(">") + 1
    return (svg[:head_end] + f'<title id="{prefix}-title">{escape(title)}</title>' + svg[head_end:]).strip()


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display), with the charts' shared defaults."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    # text.parse_math off: labels, names and titles come from users and are drawn literally
    # (a label "$\\undefinedmacro$" would otherwise be mathtext, and a ValueError).
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10, "text.parse_math": False})
    return plt


def figure_svg(plt, fig, *, prefix: str, title: str) -> str:
    """Draw the figure as inline SVG and close it. The same data draws the same SVG."""
    plt.rcParams["svg.hashsalt"] = prefix
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return inline_svg(buffer.getvalue(), prefix=prefix, title=title)
