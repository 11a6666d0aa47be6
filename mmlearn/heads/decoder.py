"""A head is a decoder that reads logits: one forward pass per batch, per-class probabilities out,
nothing to parse (`parse_failure_rate` is 0 by construction and still reported).

`HeadDecoder` reads a classification head (`head=linear`): `context.model` is the `HeadClassifier`
(mmlearn/heads/classifier.py). Multiclass: softmax and argmax. Multi-label: one sigmoid per label,
predicted at P >= its threshold (`thresholds` per label, else `threshold`; `evaluate.py
tune_thresholds=true` tunes them on val, as for decoding=score)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from mmlearn.decoding.base import Decoded, Decoder
from mmlearn.tasks.base import Parsed


def on_device(inputs: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}


def require_classification(decoder: Decoder, task) -> None:
    if getattr(task, "kind", None) not in ("multiclass", "multilabel"):
        raise ValueError(
            f"head={decoder.name} classifies: it needs a multiclass or multi-label task, "
            f"got {type(task).__name__} (use head=generate)"
        )


def decoded_from_probs(task, probs: torch.Tensor, thresholds: torch.Tensor | None) -> list[Decoded]:
    """(samples, labels) probabilities -> answers: argmax (multiclass) or P >= threshold (multi-label)."""
    out = []
    for row in probs.float().cpu():
        if task.kind == "multiclass":
            labels = (task.labels[int(row.argmax())],)
        else:
            labels = tuple(
                lab for lab, on in zip(task.labels, (row >= thresholds).tolist(), strict=True) if on
            )
        scores = {name: float(p) for name, p in zip(task.labels, row.tolist(), strict=True)}
        out.append(Decoded(task.target(labels), Parsed(labels), scores))
    return out


@dataclass(frozen=True)
class ThresholdedDecoder(Decoder):
    threshold: float
    thresholds: Mapping[str, float] | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", dict(self.thresholds) if self.thresholds else None)

    def check(self, task) -> None:
        require_classification(self, task)
        if self.thresholds is not None and set(self.thresholds) != set(task.labels):
            raise ValueError(f"head.decoder.thresholds must name exactly the labels {task.labels}")

    def label_thresholds(self, labels: list[str]) -> torch.Tensor:
        return torch.tensor([(self.thresholds or {}).get(label, self.threshold) for label in labels])

    def describe(self) -> dict:
        """mmlearn.json's `decoding` section: no `generate` call reproduces a head's answers."""
        return {
            "decoder": self.name,
            "settings": {"threshold": self.threshold, "thresholds": self.thresholds},
            "plain_generate_reproduces_predictions": False,
        }


@dataclass(frozen=True)
class HeadDecoder(ThresholdedDecoder):
    """The settings of conf/head/linear.yaml's `decoder:`."""

    name: ClassVar[str] = "head"

    @torch.no_grad()
    def decode(self, context, batch: dict) -> list[Decoded]:
        task = context.task
        logits = context.model.logits(on_device(batch["inputs"], context.device)).float()
        probs = logits.softmax(dim=-1) if task.kind == "multiclass" else logits.sigmoid()
        return decoded_from_probs(task, probs, self.label_thresholds(task.labels))
