"""The model side of decoding, built once per loaded model and task: everything a decoder may read.

Decoders see this object, never the LightningModule: validation, `evaluate.py`, a server and a
benchmark hand the same context to the same decoder. What a decoder derives from it once (a token
trie over the answers, a prefix plan, the answer budget) is memoised on the context, so it lives and
dies with the model and task it was computed for."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class DecodingContext:
    """`model`: the HF model (PEFT-wrapped or not); `processor`: its processor (or tokenizer, for a
    text-only model); `prompt`: the family's prompt format (mmlearn/models/prompting.py); `task`: what
    answers mean (labels, parser, metrics)."""

    model: Any
    processor: Any
    prompt: Any
    task: Any
    _memo: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def device(self):
        """Where the model's inputs go (the model's first parameters', as `generate` puts them)."""
        return self.model.device

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """`build()`, computed once per context and key."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @property
    def answer_budget(self) -> int:
        """Tokens of the task's longest valid answer, its end token included, as training encodes it;
        a task of free-form answers (task=generation) has no longest answer and sets its own budget."""
        fixed = getattr(self.task, "max_new_tokens", None)
        if fixed is not None:
            return fixed
        return self.memo(
            "answer_budget",
            lambda: len(self.prompt.answer_ids(self.tokenizer, self.task.longest_answer())),
        )
