"""Greedy generation that can only produce a valid answer: a token trie over the task's answers.

A row stops as soon as its answer is determined (one path left in the trie): the rest of the answer is
appended without running the model, so a 100-way label set needs as many steps as it takes to tell
the labels apart, not as many as the longest label has tokens.

Multi-label answers are JSON arrays of distinct labels in label order, so the trie holds the exact
tokenisation of each of the 2^K arrays, tokenised whole as the training targets are. A per-label state
machine would scale further, but BPE merges across `", "` boundaries would make its token sequences
differ from the training targets'; 2^K stays small for the label sets we serve (decoding.max_candidates
guards the size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from mmlearn.decoding.base import Decoded, Decoder, pad_or_eos, parsed_answers, require_closed_answers
from mmlearn.decoding.generation import generate_answers
from mmlearn.decoding.trie import TokenTrie, answer_trie


@dataclass(frozen=True)
class ConstrainedDecoder(Decoder):
    max_candidates: int  # valid answers the trie may hold (multi-label: 2^K arrays)
    name: ClassVar[str] = "constrained"

    def check(self, task) -> None:
        require_closed_answers(self, task, self.max_candidates)

    def trie(self, context) -> TokenTrie:
        """The answers' token trie, built once per context."""

        def build() -> TokenTrie:
            candidates = require_closed_answers(self, context.task, self.max_candidates)
            return answer_trie(context.prompt, context.tokenizer, [answer for answer, _ in candidates])

        return context.memo(("answer_trie", self.max_candidates), build)

    def decode(self, context, batch: dict) -> list[Decoded]:
        tokenizer = context.tokenizer
        trie = self.trie(context)
        start = batch["inputs"]["input_ids"].shape[1]  # left padding: every row's answer starts here
        finished = pad_or_eos(tokenizer)

        def allowed(batch_id, input_ids):
            return trie.next_tokens(input_ids[start:].tolist()) or [finished]

        generated = generate_answers(
            context,
            batch["inputs"],
            max_new_tokens=trie.depth,
            prefix_allowed_tokens_fn=allowed,
            stopping_criteria=StoppingCriteriaList([AnswerDetermined(trie, start)]),
            decode=False,
        )
        answers = []
        for row in generated.tolist():
            path, rest = trie.determined(row)
            answers.append(path + rest)
        outputs = tokenizer.batch_decode(answers, skip_special_tokens=True)
        return parsed_answers(context, outputs, batch["samples"])


class AnswerDetermined(StoppingCriteria):
    """Per row: stop once only one valid answer can follow the tokens generated so far."""

    def __init__(self, trie: TokenTrie, start: int) -> None:
        self.trie, self.start = trie, start

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        done = [self.trie.determined(row[self.start :]) is not None for row in input_ids.tolist()]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
