"""The Labor Card's charts, drawn on the server with matplotlib (Agg) as SVG: no internet, no
script. matplotlib is imported inside the functions, so the web process pays for it only when a
chart is drawn.

The SVG is made safe to put inline in a page whose Content-Security-Policy forbids inline
styles (frontend/middleware.py): matplotlib's `style="..."` attributes become the equivalent
SVG presentation attributes, its <style> element goes, and its element ids get a per-chart
prefix so several charts can share one page.
"""

from __future__ import annotations

import io
import re
from html import escape

PALETTE = [
    "#1b4965",
    "#5fa8d3",
    "#ca6702",
    "#9b2226",
    "#2a9d8f",
    "#e9c46a",
    "#6d597a",
    "#94d2bd",
    "#bb3e03",
    "#005f73",
    "#ae2012",
    "#0a9396",
]
OTHERS_COLOR = "#bdbdbd"
FIGSIZE = (6.4, 3.4)

_STYLE_ATTR = re.compile(r'\sstyle="([^"]*)"')
_STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_HREF = re.compile(r'(xlink:href|href)="#([^"]+)"')


def _presentation_attributes(match: re.Match) -> str:
    pairs = []
    for declaration in match.group(1).split(";"):
        if ":" not in declaration:
            continue
        name, value = (part.strip() for part in declaration.split(":", 1))
        if re.fullmatch(r"[a-z-]+", name):
            pairs.append(f' {name}="{escape(value, quote=False).replace(chr(34), "&quot;")}"')
    return "".join(pairs)


def inline_svg(svg: str, *, prefix: str, title: str) -> str:
    """matplotlib's SVG document made into an inline <svg> element for a strict-CSP page."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = _STYLE_ELEMENT.sub("", svg)
    svg = _STYLE_ATTR.sub(_presentation_attributes, svg)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _URL_REF.sub(lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    svg = _HREF.sub(lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"', svg)
    # matplotlib's one stylesheet rule (*{stroke-linejoin: round; stroke-linecap: butt}), inherited instead.
    head_end = svg.index(">")
    svg = (
        svg[:head_end]
        + f' role="img" aria-labelledby="{prefix}-title" stroke-linejoin="round" stroke-linecap="butt"'
        + svg[head_end:]
    )
    head_end = svg.index(">") + 1
    svg = svg[:head_end] + f'<title id="{prefix}-title">{escape(title)}</title>' + svg[head_end:]
    return svg.strip()


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
        }
    )
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return plt, fig, ax


def _svg(plt, fig, *, prefix: str, title: str) -> str:
    plt.rcParams["svg.hashsalt"] = prefix  # stable ids: the same data draws the same SVG
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return inline_svg(buffer.getvalue(), prefix=prefix, title=title)


def learning_curve(points: list[dict], *, current: int) -> str:
    """Held-out accuracy against labor-hours across versions: the hours embodied in each
    version's training labels, and all the hours on the books when its training set was read.
    `points`: [{"version", "accuracy", "embodied_hours", "recorded_hours"}]."""
    plt, fig, ax = _figure()
    title = "Learning curve: held-out accuracy against labor-hours"
    usable = [p for p in points if p.get("accuracy") is not None]
    if usable:
        xs = [p["embodied_hours"] for p in usable]
        ys = [p["accuracy"] for p in usable]
        ax.plot(xs, ys, marker="o", markersize=4, color=PALETTE[0], label="hours in its training labels")
        ax.plot(
            [p["recorded_hours"] for p in usable],
            ys,
            marker="s",
            markersize=3,
            linestyle="--",
            color=PALETTE[2],
            label="all hours on the books at training",
        )
        for p in usable:
            if p["version"] == current:
                ax.annotate(
                    f"v{current}",
                    (p["embodied_hours"], p["accuracy"]),
                    textcoords="offset points",
                    xytext=(4, -12),
                    color=PALETTE[3],
                )
                ax.plot([p["embodied_hours"]], [p["accuracy"]], marker="o", markersize=8, color=PALETTE[3])
        ax.legend(loc="lower right", frameon=False)
    else:
        ax.text(0.5, 0.5, "No version has a held-out accuracy yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("active labor-hours")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    return _svg(plt, fig, prefix="learning-curve", title=title)


def hours_by_annotator(stack: dict) -> str:
    """Labor-hours embodied in each version, stacked by (pseudonymized) annotator.
    `stack`: {"versions": [1, 2, ...], "series": [{"annotator": "...", "hours": [..]}, ...]}."""
    plt, fig, ax = _figure()
    title = "Labor-hours in each version, by annotator (pseudonymized)"
    versions = stack.get("versions", [])
    series = stack.get("series", [])
    if versions and series:
        positions = list(range(len(versions)))
        bottom = [0.0] * len(versions)
        for i, item in enumerate(series):
            color = OTHERS_COLOR if item.get("others") else PALETTE[i % len(PALETTE)]
            ax.bar(positions, item["hours"], bottom=bottom, color=color, label=item["annotator"], width=0.8)
            bottom = [b + h for b, h in zip(bottom, item["hours"], strict=True)]
        step = max(1, len(versions) // 12)
        ax.set_xticks(positions[::step], [f"v{v}" for v in versions[::step]])
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    else:
        ax.text(0.5, 0.5, "No human labor in these versions", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("model version")
    ax.set_ylabel("active labor-hours")
    ax.set_title(title)
    return _svg(plt, fig, prefix="hours-by-annotator", title=title)


def wage_distribution(wages: list[float], *, floor: float | None, currency: str) -> str:
    """Effective hourly wages of the annotators behind a version, against the floor."""
    plt, fig, ax = _figure()
    title = f"Effective hourly wage per annotator ({currency}), against the floor"
    if wages:
        bins = min(20, max(5, len(wages) // 2))
        ax.hist(wages, bins=bins, color=PALETTE[1], edgecolor="#ffffff")
        if floor is not None and floor > 0:
            ax.axvline(floor, color=PALETTE[3], linestyle="--", linewidth=1.5, label=f"floor {floor:.2f}")
            ax.legend(loc="upper right", frameon=False)
    else:
        ax.text(0.5, 0.5, "No hours worked on this version's labels", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"{currency} per hour worked (pay with top-ups)")
    ax.set_ylabel("annotators")
    ax.set_title(title)
    return _svg(plt, fig, prefix="wage-distribution", title=title)
