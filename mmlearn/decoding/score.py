"""Label-likelihood scoring: every valid answer is scored as a continuation of the prompt, in batched
forward passes of (samples x candidates) rows; the answer's end token is part of the scored span, so a
label that is a prefix of another (`not` / `not_informative`) stays distinguishable.

`likelihood=constrained` (the default) normalises every step over the tokens that continue some
valid answer: the distribution `decoding=constrained` follows greedily, here summed exactly over every
answer. Its per-class probabilities are those of the model forced to answer validly (they sum to 1 by
construction); a step with one valid continuation counts log 1, so nothing after the point where an
answer is determined is computed (at 100 classes about 13x fewer token positions than `full`).
`likelihood=full` is the model's own likelihood over its whole vocabulary (as lm-eval scores
choices): a softmax over the candidates is the model's distribution restricted to the valid answers.
For a model trained on the answers the two agree closely; zero-shot they differ (`full` also weighs
how likely the model finds the rest of each label, and so favours short labels).

`normalize=sum` (the default) scores log P(answer + end | prompt): calibrated per-class
probabilities, and for multi-label tasks exact per-label marginals. `mean` (per-token average, `full`
only) removes the bias towards short answers but is no longer a probability; use it to compare, not
for thresholds.

`share_prompt=true` (the default) encodes each prompt and its images once and scores the candidates
as continuations of its KV cache, packed into one sequence per sample behind a tree attention mask
(mmlearn/decoding/shared_prompt.py; `segment_tokens` and `tokens_per_pass` bound a pass); `false` scores every full
(prompt + answer) sequence on its own, `rows_per_batch` at a time: the reference the shared path is
tested against, and the way for attention implementations that take no custom mask (flash attention).

Multi-class: the argmax candidate; `scores` are the softmax over the K labels.
Multi-label: the candidates are the 2^K valid JSON arrays; P(label present) is the summed probability
of the arrays containing it, and a label is predicted when P >= its threshold (`thresholds` per label,
else `threshold`; `evaluate.py tune_thresholds=true` tunes them on val). `scores` are those marginals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from mmlearn.decoding.base import Decoded, Decoder, require_closed_answers
from mmlearn.decoding.prefix_plan import LIKELIHOODS, PrefixPlan, plan_prefixes
from mmlearn.decoding.shared_prompt import score_with_shared_prompt
from mmlearn.models.loss import at_least_float32
from mmlearn.models.prompting import IGNORE_INDEX
from mmlearn.tasks.base import Parsed

NORMALIZE = ("sum", "mean")


@dataclass(frozen=True)
class ScoreDecoder(Decoder):
    """The settings of conf/decoding/score.yaml (see there); `thresholds` come from the config or from
    `evaluate.py tune_thresholds=true` (`with_thresholds`: a new decoder)."""

    normalize: str
    likelihood: str
    rows_per_batch: int
    tokens_per_pass: int
    segment_tokens: int | None
    max_candidates: int
    threshold: float
    thresholds: Mapping[str, float] | None
    share_prompt: bool
    name: ClassVar[str] = "score"

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ValueError(f"decoding.normalize must be one of {NORMALIZE}, got {self.normalize!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"decoding.likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.likelihood == "constrained" and (self.normalize != "sum" or not self.share_prompt):
            raise ValueError(
                "decoding.likelihood=constrained needs decoding.normalize=sum and decoding.share_prompt=true "
                f"(got normalize={self.normalize!r}, share_prompt={self.share_prompt}); "
                "add decoding.likelihood=full for those settings"
            )
        # a plain dict whatever the caller passed (Hydra passes a DictConfig); frozen: set once, here
        object.__setattr__(self, "thresholds", dict(self.thresholds) if self.thresholds else None)

    def check(self, task) -> None:
        require_closed_answers(self, task, self.max_candidates)
        if self.thresholds is not None and set(self.thresholds) != set(task.labels):
            raise ValueError(f"decoding.thresholds must name exactly the labels {task.labels}")

    def label_thresholds(self, labels: list[str]) -> torch.Tensor:
        return torch.tensor([(self.thresholds or {}).get(label, self.threshold) for label in labels])

    def decode(self, context, batch: dict) -> list[Decoded]:
        task = context.task
        candidates = require_closed_answers(self, task, self.max_candidates)
        answers = [answer for answer, _ in candidates]
        if self.share_prompt:
            plan = self.plan(context, answers)
            logp = score_with_shared_prompt(
                context.model,
                batch["inputs"],
                plan,
                tokens_per_pass=self.tokens_per_pass,
                segment_tokens=self.segment_tokens,
                device=context.device,
            )
            if self.normalize == "mean":
                logp = logp / torch.tensor(plan.answer_lengths, dtype=logp.dtype)
        else:
            logp = score_candidates(
                context.model,
                context.processor,
                context.prompt,
                batch,
                answers,
                normalize=self.normalize,
                rows_per_batch=self.rows_per_batch,
                device=context.device,
            )
        probs = logp.softmax(dim=-1)
        if task.kind == "multiclass":
            return [_decoded(task, candidates[int(row.argmax())][1], row, task.labels) for row in probs]
        membership = torch.stack([task.to_multi_hot(labels) for _, labels in candidates]).to(probs)
        marginals = probs @ membership  # (samples, labels): P(label in the answer)
        chosen = marginals >= self.label_thresholds(task.labels).to(marginals)
        return [
            _decoded(task, tuple(lab for lab, on in zip(task.labels, row, strict=True) if on), p, task.labels)
            for row, p in zip(chosen.tolist(), marginals, strict=True)
        ]

    def plan(self, context, answers: list[str]) -> PrefixPlan:
        """What to read for the candidates' scored tokens (the reply + end token exactly as a training
        batch encodes them), once per context."""

        def build() -> PrefixPlan:
            answer_ids = [context.prompt.answer_ids(context.tokenizer, answer) for answer in answers]
            return plan_prefixes(answer_ids, self.likelihood)

        return context.memo(("prefix_plan", self.likelihood, self.max_candidates), build)


def _decoded(task, labels: tuple[str, ...], probs: torch.Tensor, names: list[str]) -> Decoded:
    scores = {name: float(p) for name, p in zip(names, probs.tolist(), strict=True)}
    return Decoded(task.target(labels), Parsed(labels), scores)


@torch.no_grad()
def score_candidates(
    model,
    processor,
    prompt_format,
    batch: dict,
    answers: list[str],
    *,
    normalize: str,
    rows_per_batch: int,
    device,
) -> torch.Tensor:
    """log P(answer + end token | prompt) for every (sample, answer) pair: a (samples, answers) tensor.
    Rows are right-padded after the answer, so padding never changes a row's score."""
    n, c = len(batch["prompts"]), len(answers)
    rows = [(i, j) for i in range(n) for j in range(c)]
    scores = torch.empty(n * c, dtype=torch.promote_types(model.dtype, torch.float32))
    for start in range(0, len(rows), rows_per_batch):
        chunk = rows[start : start + rows_per_batch]
        extra = {"shots": [batch["shots"][i] for i, _ in chunk]} if batch.get("shots") is not None else {}
        inputs = prompt_format.encode(
            processor,
            [batch["prompts"][i] for i, _ in chunk],
            [batch["images"][i] for i, _ in chunk],
            answers=[answers[j] for _, j in chunk],
            **extra,
        )
        scores[start : start + len(chunk)] = _answer_logprob(model, inputs, normalize, device)
    return scores.view(n, c)


def _answer_logprob(model, inputs: dict, normalize: str, device) -> torch.Tensor:
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    labels = inputs.pop("labels")[:, 1:]
    logits = model(**inputs).logits[:, :-1]
    mask = labels != IGNORE_INDEX
    picked = at_least_float32(logits[mask]).log_softmax(dim=-1)  # only the answer positions: (tokens, vocab)
    token_logp = picked.gather(1, labels[mask].unsqueeze(1)).squeeze(1)
    row = torch.zeros(labels.shape[0], device=token_logp.device, dtype=token_logp.dtype)
    row.index_add_(0, mask.nonzero()[:, 0], token_logp)
    if normalize == "mean":
        row = row / mask.sum(dim=1)
    return row.cpu()
