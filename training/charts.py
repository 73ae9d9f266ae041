"""Server-side charts of a model version as inline SVG (matplotlib, no internet needed).
Imported by the web process: matplotlib is loaded inside the functions, torch never."""

from __future__ import annotations

from core.svg import figure_svg, pyplot


def learning_curve_svg(curve: dict) -> str:
    """Left: training loss and held-out accuracy per epoch of this version. Right: held-out
    accuracy against the number of labels across versions."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    epochs = curve["epochs"]
    xs = [e["epoch"] for e in epochs]
    left.plot(xs, [e["train_loss"] for e in epochs], color="tab:red", label="training loss")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss", color="tab:red")
    acc = [(e["epoch"], e["eval_accuracy"]) for e in epochs if e.get("eval_accuracy") is not None]
    if acc:
        twin = left.twinx()
        twin.plot([a for a, _ in acc], [b for _, b in acc], color="tab:blue", label="held-out accuracy")
        twin.set_ylabel("held-out accuracy", color="tab:blue")
        twin.set_ylim(0, 1)
    left.set_title(f"v{curve['version']}: per epoch")
    points = [v for v in curve["versions"] if v["accuracy"] is not None]
    if points:
        right.plot([v["n_annotations"] for v in points], [v["accuracy"] for v in points], "o-", color="tab:blue")
        for v in points:
            right.annotate(
                f"v{v['sequence']}",
                (v["n_annotations"], v["accuracy"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
        right.set_ylim(0, 1)
    else:
        right.text(0.5, 0.5, "no held-out labels yet", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("labels trained on")
    right.set_ylabel("held-out accuracy")
    right.set_title("across versions")
    right.grid(alpha=0.3)
    fig.tight_layout()
    return figure_svg(plt, fig, prefix="learning-curve", title=f"Learning curve of v{curve['version']}")


def confusion_matrix_svg(confusion: dict) -> str:
    plt = pyplot()
    labels, matrix = confusion["labels"], confusion["matrix"]
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * k, 1.0 + 0.6 * k))
    ax.imshow(matrix, cmap="Blues")
    peak = max((max(row) for row in matrix), default=0) or 1
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(matrix[i][j]),
                ha="center",
                va="center",
                color="white" if matrix[i][j] > peak / 2 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (held out)")
    fig.tight_layout()
    return figure_svg(plt, fig, prefix="confusion", title="Confusion matrix on the held-out labels")
