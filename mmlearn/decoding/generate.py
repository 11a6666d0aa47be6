"""Free greedy generation: today's path, the one the seeds use (batched, left-padded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mmlearn.decoding.base import Decoded, Decoder, parsed_answers
from mmlearn.decoding.generation import generate_answers, generate_kwargs


@dataclass(frozen=True)
class GenerateDecoder(Decoder):
    """Greedy `generate` up to the longest valid answer + end token + `extra_new_tokens`; the parser
    decides what the text means, and unparseable text counts as a parse failure."""

    extra_new_tokens: int  # generation budget beyond the longest valid answer and its end token
    name: ClassVar[str] = "generate"

    def __post_init__(self) -> None:
        if self.extra_new_tokens < 0:
            raise ValueError(f"decoding.extra_new_tokens must be >= 0, got {self.extra_new_tokens}")

    def max_new_tokens(self, context) -> int:
        return context.answer_budget + self.extra_new_tokens

    def generate_kwargs(self, context) -> dict:
        """The `generate` arguments of this decoder (mmlearn.json records them)."""
        return generate_kwargs(context, self.max_new_tokens(context))

    def decode(self, context, batch: dict) -> list[Decoded]:
        outputs = generate_answers(context, batch["inputs"], max_new_tokens=self.max_new_tokens(context))
        return parsed_answers(context, outputs, batch["samples"])
