"""Zero-shot classification with an NLI checkpoint (`head=nli`, BART-MNLI style): each label becomes
a hypothesis ("This text is about {label}.") with the sample's text as the premise.

Multiclass: the softmax over the labels of the entailment logits. Multi-label: for each label on its
own, the softmax over (contradiction, entailment), its entailment probability, predicted at >= its
threshold. Both are what transformers' zero-shot-classification pipeline computes (`multi_label`
false / true). The entailment and contradiction classes are found by name in the checkpoint's
`config.label2id`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from mmlearn.decoding.base import Decoded
from mmlearn.heads.decoder import ThresholdedDecoder, decoded_from_probs, on_device


def nli_class(model_config, name: str) -> int:
    by_name = {str(label).lower(): int(i) for label, i in model_config.label2id.items()}
    if name.lower() not in by_name:
        raise ValueError(
            f"head=nli: the checkpoint's classes are {sorted(by_name)}, none named {name!r} "
            "(head.decoder.entailment / head.decoder.contradiction)"
        )
    return by_name[name.lower()]


def nli_probs(logits: torch.Tensor, entail: int, contra: int, kind: str) -> torch.Tensor:
    """logits: (samples, labels, nli classes) -> (samples, labels) probabilities."""
    if kind == "multiclass":
        return logits[..., entail].softmax(dim=-1)
    return logits[..., [contra, entail]].softmax(dim=-1)[..., 1]


@dataclass(frozen=True)
class NLIDecoder(ThresholdedDecoder):
    """The settings of conf/head/nli.yaml's `decoder:`."""

    hypothesis: str
    entailment: str
    contradiction: str
    pairs_per_batch: int
    max_length: int
    name: ClassVar[str] = "nli"

    def check(self, task) -> None:
        super().check(task)
        if "{label}" not in self.hypothesis:
            raise ValueError(f"head.decoder.hypothesis must contain {{label}}, got {self.hypothesis!r}")

    @torch.no_grad()
    def decode(self, context, batch: dict) -> list[Decoded]:
        task, model, tokenizer = context.task, context.model, context.tokenizer
        premises = [sample.text for sample in batch["samples"]]
        if any(p is None for p in premises):
            raise ValueError("head=nli reads each sample's text as the premise: use modality=text")
        hypotheses = [self.hypothesis.format(label=label) for label in task.labels]
        pairs = [(p, h) for p in premises for h in hypotheses]
        logits = []
        for start in range(0, len(pairs), self.pairs_per_batch):
            chunk = pairs[start : start + self.pairs_per_batch]
            inputs = tokenizer(
                [p for p, _ in chunk],
                [h for _, h in chunk],
                padding=True,
                truncation="only_first",
                max_length=self.max_length,
                return_tensors="pt",
            )
            logits.append(model(**on_device(dict(inputs), context.device)).logits.float().cpu())
        grid = torch.cat(logits).view(len(premises), len(hypotheses), -1)
        entail = nli_class(model.config, self.entailment)
        contra = nli_class(model.config, self.contradiction)
        probs = nli_probs(grid, entail, contra, task.kind)
        return decoded_from_probs(task, probs, self.label_thresholds(task.labels))
