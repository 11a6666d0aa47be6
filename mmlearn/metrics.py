"""Task metrics on multi-hot rows, defined as scikit-learn defines them.

Multi-class predictions are one-hot rows (a parse failure is an all-zero row), so one set of
multi-label metrics serves both tasks and equals `sklearn.metrics` with `labels=range(K)`:
per-class F1 is one-vs-rest, a class with no support and no predictions scores 0 (never 1),
weighted F1 weights by support, and multi-class accuracy is exact match of the one-hot rows.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import (
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
    MultilabelPrecision,
    MultilabelRecall,
)
from torchmetrics.wrappers import ClasswiseWrapper

PER_CLASS_F1 = "f1"  # the collection's ClasswiseWrapper: it computes one `f1/<label>` per class


class ParseFailureRate(MeanMetric):
    """The share of answers no label could be read from. Takes the collection's arguments; only
    `parse_ok` counts."""

    def update(self, preds: torch.Tensor, target: torch.Tensor, parse_ok: torch.Tensor) -> None:
        super().update((~parse_ok).float())


def _scores(k: int, kind: str, labels: list[str]) -> dict[str, Metric]:
    scores: dict[str, Metric] = {
        "f1_micro": MultilabelF1Score(k, average="micro", zero_division=0),
        "f1_macro": MultilabelF1Score(k, average="macro", zero_division=0),
        "f1_weighted": MultilabelF1Score(k, average="weighted", zero_division=0),
        "precision_macro": MultilabelPrecision(k, average="macro", zero_division=0),
        "recall_macro": MultilabelRecall(k, average="macro", zero_division=0),
        PER_CLASS_F1: ClasswiseWrapper(
            MultilabelF1Score(k, average=None, zero_division=0), labels=labels, prefix=f"{PER_CLASS_F1}/"
        ),
        "parse_failure_rate": ParseFailureRate(),
    }
    if kind == "multilabel":
        scores["subset_accuracy"] = MultilabelExactMatch(k)
        scores["hamming_loss"] = MultilabelHammingDistance(k, average="micro")
    else:
        scores["accuracy"] = MultilabelExactMatch(k)
    return scores


class TaskMetrics(MetricCollection):
    """Every classification metric in one collection: metrics with the same state (the F1s, precision,
    recall and per-class F1 all count tp/fp/fn per class) share it, and it is synchronised across
    processes once per state."""

    def __init__(self, labels: list[str], kind: str) -> None:
        super().__init__(_scores(len(labels), kind, list(labels)))
        self.labels = list(labels)
        self.kind = kind

    def update(self, preds: torch.Tensor, target: torch.Tensor, parse_ok: torch.Tensor) -> None:
        super().update(preds, target, parse_ok=parse_ok)

    def compute(self) -> dict[str, float]:
        return {name: float(value) for name, value in super().compute().items()}

    def names(self) -> list[str]:
        scores = [name for name in self.keys() if name != PER_CLASS_F1]
        return [*scores, *(f"{PER_CLASS_F1}/{label}" for label in self.labels)]


class ClassificationMetrics(torch.nn.Module):
    """Parsed answers of a classification task -> TaskMetrics' multi-hot rows."""

    def __init__(self, task) -> None:
        super().__init__()
        self.task = task
        self.inner = TaskMetrics(task.labels, task.kind)

    def update(self, parsed: list, samples: list) -> None:
        device = self.inner.parse_failure_rate.device
        preds = torch.stack(
            [self.task.prediction_row(p, s.labels) for p, s in zip(parsed, samples, strict=True)]
        )
        golds = torch.stack([self.task.to_multi_hot(s.labels) for s in samples])
        oks = torch.tensor([p.ok for p in parsed])
        self.inner.update(preds.to(device), golds.to(device), oks.to(device))

    def compute(self) -> dict[str, float]:
        return self.inner.compute()

    def names(self) -> list[str]:
        return self.inner.names()

    def reset(self) -> None:
        self.inner.reset()
