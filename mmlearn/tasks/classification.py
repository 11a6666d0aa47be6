"""Generative classification: the label set drives the prompt, the target and the parser."""

from __future__ import annotations

import json
import re

import torch

from mmlearn.sample import Sample
from mmlearn.tasks.base import Parsed, Task

_JSON_ARRAY = re.compile(r"\[[^\[\]]*\]", re.DOTALL)


def normalise(label: str) -> str:
    """Case- and whitespace-insensitive form used to match generated labels to the label set."""
    return " ".join(label.strip().lower().replace("_", " ").split())


class ClassificationTask(Task):
    """Shared label bookkeeping; subclasses define the target format and parser."""

    headline = "f1_macro"

    def __init__(self, labels: list[str], instruction: str) -> None:
        if not labels:
            raise ValueError("a classification task needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate labels in the label set: {labels}")
        self.labels = list(labels)
        self.instruction = instruction
        self._by_norm = {normalise(label): label for label in self.labels}
        if len(self._by_norm) != len(self.labels):
            raise ValueError(f"labels collide after case/underscore normalisation: {labels}")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def prompt(self, sample: Sample) -> str:
        body = self.instruction.format(labels=", ".join(self.labels))
        return body if sample.text is None else f"{body}\nText: {sample.text}"

    def answer(self, sample: Sample) -> str:
        return self.target(sample.labels)

    def build_metrics(self):
        from mmlearn.metrics import ClassificationMetrics

        return ClassificationMetrics(self)

    def canonical(self, label: str) -> str | None:
        return self._by_norm.get(normalise(label))

    def target(self, labels: tuple[str, ...] | list[str]) -> str:
        raise NotImplementedError

    def parse(self, output: str, sample: Sample | None = None) -> Parsed:
        raise NotImplementedError

    def longest_answer(self) -> str:
        raise NotImplementedError

    def candidates(self, limit: int) -> list[tuple[str, tuple[str, ...]]]:
        """Every valid answer with the labels it means, for constrained decoding and label scoring.
        Refuses to enumerate more than `limit` answers (a multi-label task has 2^K)."""
        raise NotImplementedError

    def to_multi_hot(self, labels: tuple[str, ...] | list[str]) -> torch.Tensor:
        index = {label: i for i, label in enumerate(self.labels)}
        row = torch.zeros(self.num_labels, dtype=torch.long)
        for label in labels:
            row[index[label]] = 1
        return row

    def prediction_row(self, parsed: Parsed, gold: tuple[str, ...]) -> torch.Tensor:
        """Multi-hot prediction for scoring; a parse failure must score as wrong."""
        raise NotImplementedError


class MultiLabelTask(ClassificationTask):
    """Zero or more labels, answered as a JSON array in label-set order."""

    kind = "multilabel"

    def target(self, labels):
        order = {label: i for i, label in enumerate(self.labels)}
        return json.dumps(sorted(set(labels), key=order.__getitem__))

    def longest_answer(self) -> str:
        return json.dumps(self.labels)

    def candidates(self, limit: int) -> list[tuple[str, tuple[str, ...]]]:
        if 2**self.num_labels > limit:
            raise ValueError(
                f"{self.num_labels} labels make {2**self.num_labels} possible answers (every subset), "
                f"more than the limit of {limit}; raise decoding.max_candidates or use decoding=generate"
            )
        subsets = (
            tuple(label for i, label in enumerate(self.labels) if mask >> i & 1)
            for mask in range(2**self.num_labels)
        )
        return [(self.target(subset), subset) for subset in subsets]

    def parse(self, output: str, sample: Sample | None = None) -> Parsed:
        match = _JSON_ARRAY.search(output)
        if match is None:
            return Parsed(None)
        try:
            items = json.loads(match.group(0))
        except json.JSONDecodeError:
            return Parsed(None)
        if not all(isinstance(item, str) for item in items):
            return Parsed(None)
        known = {self.canonical(item) for item in items} - {None}
        return Parsed(tuple(label for label in self.labels if label in known))

    def prediction_row(self, parsed, gold):
        if parsed.ok:
            return self.to_multi_hot(parsed.labels)
        # Worst case: every label decision wrong, so a failure never counts as an exact match.
        return 1 - self.to_multi_hot(gold)


class MultiClassTask(ClassificationTask):
    """Exactly one label, answered as the label itself."""

    kind = "multiclass"

    def target(self, labels):
        if len(labels) != 1:
            raise ValueError(f"a multiclass target needs exactly one label, got {list(labels)}")
        return labels[0]

    def longest_answer(self) -> str:
        return max(self.labels, key=len)

    def candidates(self, limit: int) -> list[tuple[str, tuple[str, ...]]]:
        if self.num_labels > limit:
            raise ValueError(f"{self.num_labels} labels exceed decoding.max_candidates={limit}")
        return [(label, (label,)) for label in self.labels]

    def parse(self, output: str, sample: Sample | None = None) -> Parsed:
        text = output.strip().strip(".").strip('"').strip()
        label = self.canonical(text)
        return Parsed(None) if label is None else Parsed((label,))

    def prediction_row(self, parsed, gold):
        # A failure predicts no class at all: a miss for the gold class, a false alarm for none.
        return self.to_multi_hot(parsed.labels if parsed.ok else ())
