"""The Labor Card's charts, drawn on the server with matplotlib (Agg) as SVG: no internet, no
script. matplotlib is imported inside the functions, so the web process pays for it only when a
chart is drawn.

core.svg makes the SVG safe to put inline in a page whose Content-Security-Policy forbids
inline styles.
"""

from __future__ import annotations

from core.svg import figure_svg, pyplot

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


def _figure():
    plt = pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    ax.spines[["top", "right"]].set_visible(False)
    return plt, fig, ax


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
    return figure_svg(plt, fig, prefix="learning-curve", title=title)


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
    return figure_svg(plt, fig, prefix="hours-by-annotator", title=title)


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
    return figure_svg(plt, fig, prefix="wage-distribution", title=title)


EARNINGS_DAYS = 14


def earnings_by_day(days: list[dict], *, currency: str) -> str:
    """The earnings page's chart: per day (oldest left), hours worked above, and below the pay
    (booked, then the top-up settled or projected) against the floor those hours earned.
    `days`: [{"period": date, "hours": float, "pay": float, "top_up": float, "floor": float,
    "settled": bool}], at most the last EARNINGS_DAYS."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 3.6), sharex=True, layout="constrained")
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
    xs = list(range(len(days)))
    names = [d["period"].strftime("%m-%d") for d in days]
    top.bar(xs, [d["hours"] for d in days], color=PALETTE[1], width=0.6)
    top.set_ylabel("hours worked")
    pay = [d["pay"] for d in days]
    bottom.bar(xs, pay, color=PALETTE[0], width=0.6, label="pay")
    settled = [d["top_up"] if d["settled"] else 0.0 for d in days]
    projected = [0.0 if d["settled"] else d["top_up"] for d in days]
    bottom.bar(xs, settled, bottom=pay, color=PALETTE[4], width=0.6, label="top-up")
    bottom.bar(
        xs, projected, bottom=pay, color="#ffffff", edgecolor=PALETTE[2], hatch="//", width=0.6,
        label="top-up (projected, period open)",
    )  # fmt: skip
    bottom.scatter(xs, [d["floor"] for d in days], marker="_", s=300, color=PALETTE[3], zorder=3, label="floor")
    bottom.set_ylabel(currency)
    bottom.set_xticks(xs, names)
    bottom.legend(loc="upper left", fontsize=7, frameon=False, ncols=2)
    title = "Hours worked and pay per day, against the floor"
    return figure_svg(plt, fig, prefix="earnings-days", title=title)
