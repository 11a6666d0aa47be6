"""The confusion matrix behind confusion.png, and the picture itself.

Multiclass (binary and multiple-choice letters too): gold x predicted counts, with an `(unparsed)`
column for answers that named no class. Multi-label: one 2x2 matrix per label, laid out as sklearn's
`multilabel_confusion_matrix` ([[tn, fp], [fn, tp]]: rows gold absent/present, columns predicted
absent/present), where a parse failure is wrong on every label, as the metrics count it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlearn.reports.per_class import UNPARSED, multi_hot_rows, multiclass_pairs
from mmlearn.tasks.classification import ClassificationTask

ANNOTATE_UP_TO = 20  # cell counts are written into the picture up to this many classes


@dataclass(frozen=True)
class Confusion:
    layout: str  # "gold_x_predicted" or "per_label_2x2"
    gold: list[str]  # row names (multiclass) or the labels (per label)
    predicted: list[str]  # column names
    counts: np.ndarray  # (gold, predicted) or (labels, 2, 2)


def confusion_data(view: ClassificationTask, records: list[dict]) -> Confusion:
    if view.kind == "multilabel":
        gold, pred = (
            np.array(rows, dtype=int).reshape(len(records), len(view.labels))
            for rows in multi_hot_rows(view, records)
        )
        counts = np.zeros((len(view.labels), 2, 2), dtype=int)
        for k in range(len(view.labels)):
            np.add.at(counts[k], (gold[:, k], pred[:, k]), 1)
        return Confusion("per_label_2x2", list(view.labels), ["absent", "present"], counts)
    columns = [*view.labels, UNPARSED]
    counts = np.zeros((len(view.labels), len(columns)), dtype=int)
    for g, p in zip(*multiclass_pairs(records), strict=True):
        counts[view.labels.index(g), columns.index(p)] += 1
    return Confusion("gold_x_predicted", list(view.labels), columns, counts)


def draw_confusion(confusion: Confusion, title: str, max_tick_labels: int):
    """The matplotlib Figure (Agg backend); close it with matplotlib.pyplot.close."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if confusion.layout == "per_label_2x2":
        return _per_label_grid(plt, confusion, title)
    return _matrix(plt, confusion, title, max_tick_labels)


def plot_confusion(confusion: Confusion, path: Path, title: str, max_tick_labels: int) -> Path:
    fig = draw_confusion(confusion, title, max_tick_labels)  # sets the Agg backend before pyplot loads
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _matrix(plt, confusion: Confusion, title: str, max_tick_labels: int):
    """Colour: the share of the gold class's samples (rows sum to 1), so rare classes stay visible;
    counts are written in the cells up to ANNOTATE_UP_TO classes, class names up to max_tick_labels."""
    counts = confusion.counts
    n_rows, n_cols = counts.shape
    side = min(max(5.0, 0.28 * n_cols + 3), 26.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    if n_rows <= ANNOTATE_UP_TO:
        for i in range(n_rows):
            for j in range(n_cols):
                if counts[i, j]:
                    color = "white" if shares[i, j] > 0.5 else "black"
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color, fontsize=8)
    if n_rows <= max_tick_labels:
        ax.set_xticks(range(n_cols), confusion.predicted, rotation=90, fontsize=8)
        ax.set_yticks(range(n_rows), confusion.gold, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
    else:  # class numbers (rows of per_class.csv, from 0) every `step` classes instead of names
        step = 10 ** max(1, len(str(n_rows - 1)) - 1)
        numbers = list(range(0, n_rows, step))
        ax.set_xticks([*numbers, n_cols - 1], [*map(str, numbers), UNPARSED], rotation=90, fontsize=8)
        ax.set_yticks(numbers, [str(i) for i in numbers], fontsize=8)
        note = f"class number = row of per_class.csv; names hidden above {max_tick_labels} classes"
        ax.set_xlabel(f"predicted ({note})")
        ax.set_ylabel("gold (class number)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the gold class")
    fig.tight_layout()
    return fig


def _per_label_grid(plt, confusion: Confusion, title: str):
    n = len(confusion.gold)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell = min(2.6, 26.0 / max(cols, rows))
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 0.5, cell * rows + 0.8), squeeze=False)
    names = [["tn", "fp"], ["fn", "tp"]]
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        counts = confusion.counts[k]
        ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
        for i in range(2):
            for j in range(2):
                color = "white" if counts[i, j] > counts.max() / 2 else "black"
                ax.text(
                    j, i, f"{names[i][j]}\n{counts[i, j]}", ha="center", va="center", color=color, fontsize=8
                )
        ax.set_title(confusion.gold[k], fontsize=9)
        ax.set_xticks([0, 1], ["absent", "present"], fontsize=7)
        ax.set_yticks([0, 1], ["absent", "present"], fontsize=7)
        if k % cols == 0:
            ax.set_ylabel("gold", fontsize=8)
        if k >= n - cols:
            ax.set_xlabel("predicted", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
