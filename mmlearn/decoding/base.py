"""What a decoder is and returns, and the check that a task has the closed answer set a decoder needs.

A decoder is a frozen dataclass built from `conf/decoding/<name>.yaml`: its settings never change
after construction (tuned thresholds make a new decoder, `dataclasses.replace`). It reads answers
through `decode(context, batch)`, where the context (mmlearn/decoding/context.py) is the model side —
model, processor, prompt format, task — and the batch is what the datamodule's collator made. Anything
that turns a batch into answers fits the seam: a decoder that generates, one that scores candidates,
one that reads a classification head's logits, one that sends the prompts to an HTTP endpoint."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar

from mmlearn.tasks.base import Parsed


@dataclass(frozen=True)
class Decoded:
    """One answer: the text, what the task's parser made of it, and per-class probabilities when the
    decoder computes them."""

    output: str
    parsed: Parsed
    scores: dict[str, float] | None = None

    def record_fields(self) -> dict:
        """What this answer adds to its line of predictions/<split>.jsonl beyond output, parsed and
        scores (an endpoint's answer: its token usage, ...)."""
        return {}


@dataclass(frozen=True)
class Decoder:
    name: ClassVar[str] = ""

    def check(self, task) -> None:
        """Raise when this decoder cannot serve the task; called once, before any batch."""

    def decode(self, context, batch: dict) -> list[Decoded]:
        raise NotImplementedError


def tunes_thresholds(decoder: Decoder) -> bool:
    """Whether the decoder predicts multi-label answers by per-label thresholds on probabilities."""
    return "thresholds" in {f.name for f in fields(decoder)}


def with_thresholds(decoder: Decoder, thresholds: dict[str, float]) -> Decoder:
    """The same decoder with per-label thresholds (tuned on val)."""
    if not tunes_thresholds(decoder):
        raise ValueError(f"decoding={decoder.name} predicts no per-label thresholds")
    return replace(decoder, thresholds=thresholds)


def pad_or_eos(tokenizer) -> int:
    """The token that fills a finished row: the pad token, else the end token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def parsed_answers(context, outputs: list[str], samples) -> list[Decoded]:
    """Each output text with what the task's parser makes of it."""
    return [
        Decoded(raw, context.task.parse(raw, sample)) for raw, sample in zip(outputs, samples, strict=True)
    ]


def require_closed_answers(decoder: Decoder, task, limit: int) -> list[tuple[str, tuple[str, ...]]]:
    """The task's valid answers, or a clear error for tasks without a closed set (captioning, ...)."""
    if not callable(getattr(task, "candidates", None)):
        raise ValueError(
            f"decoding={decoder.name} needs a task with a closed set of answers (classification); "
            f"{type(task).__name__} supports only decoding=generate"
        )
    return task.candidates(limit)
