"""Task metrics on multi-hot rows, defined as scikit-learn defines them.

Multi-class predictions are one-hot rows (a parse failure is an all-zero row), so one set of
multi-label metrics serves both tasks and equals `sklearn.metrics` with `labels=range(K)`:
per-class F1 is one-vs-rest, a class with no support and no predictions scores 0 (never 1),
weighted F1 weights by support, and multi-class accuracy is exact match of the one-hot rows.
"""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import (
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
    MultilabelPrecision,
    MultilabelRecall,
)


class TaskMetrics(torch.nn.Module):
    def __init__(self, labels: list[str], kind: str) -> None:
        super().__init__()
        self.labels = list(labels)
        self.kind = kind
        k = len(labels)
        scores = {
            "f1_micro": MultilabelF1Score(k, average="micro", zero_division=0),
            "f1_macro": MultilabelF1Score(k, average="macro", zero_division=0),
            "f1_weighted": MultilabelF1Score(k, average="weighted", zero_division=0),
            "precision_macro": MultilabelPrecision(k, average="macro", zero_division=0),
            "recall_macro": MultilabelRecall(k, average="macro", zero_division=0),
        }
        if kind == "multilabel":
            scores["subset_accuracy"] = MultilabelExactMatch(k)
            scores["hamming_loss"] = MultilabelHammingDistance(k, average="micro")
        else:
            scores["accuracy"] = MultilabelExactMatch(k)
        self.scores = MetricCollection(scores)
        self.per_class_f1 = MultilabelF1Score(k, average=None, zero_division=0)
        self.parse_failure_rate = MeanMetric()

    def update(self, preds: torch.Tensor, target: torch.Tensor, parse_ok: torch.Tensor) -> None:
        self.scores.update(preds, target)
        self.per_class_f1.update(preds, target)
        self.parse_failure_rate.update((~parse_ok).float())

    def compute(self) -> dict[str, float]:
        out = {name: float(value) for name, value in self.scores.compute().items()}
        out["parse_failure_rate"] = float(self.parse_failure_rate.compute())
        for label, value in zip(self.labels, self.per_class_f1.compute().tolist(), strict=True):
            out[f"f1/{label}"] = float(value)
        return out

    def names(self) -> list[str]:
        return [*self.scores.keys(), "parse_failure_rate", *(f"f1/{label}" for label in self.labels)]

    def reset(self) -> None:
        self.scores.reset()
        self.per_class_f1.reset()
        self.parse_failure_rate.reset()


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
