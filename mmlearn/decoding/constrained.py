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

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from mmlearn.decoding.base import Decoded, Decoder, pad_or_eos, require_closed_answers
from mmlearn.decoding.trie import TokenTrie, answer_trie


class ConstrainedDecoder(Decoder):
    name = "constrained"

    def __init__(self, *, max_candidates: int) -> None:
        self.max_candidates = max_candidates
        self._tries: dict[tuple[int, int], TokenTrie] = {}

    def check(self, task) -> None:
        require_closed_answers(self, task, self.max_candidates)

    def trie(self, module) -> TokenTrie:
        tokenizer = module.processor.tokenizer
        key = (id(module.task), id(tokenizer), id(module.spec.prompt))
        if key not in self._tries:
            candidates = require_closed_answers(self, module.task, self.max_candidates)
            self._tries[key] = answer_trie(
                module.spec.prompt, tokenizer, [answer for answer, _ in candidates]
            )
        return self._tries[key]

    def decode(self, module, batch: dict) -> list[Decoded]:
        tokenizer = module.processor.tokenizer
        trie = self.trie(module)
        start = batch["inputs"]["input_ids"].shape[1]  # left padding: every row's answer starts here
        finished = pad_or_eos(tokenizer)

        def allowed(batch_id, input_ids):
            return trie.next_tokens(input_ids[start:].tolist()) or [finished]

        generated = module.generate_answers(
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
        return [
            Decoded(raw, module.task.parse(raw, sample))
            for raw, sample in zip(outputs, batch["samples"], strict=True)
        ]


class AnswerDetermined(StoppingCriteria):
    """Per row: stop once only one valid answer can follow the tokens generated so far."""

    def __init__(self, trie: TokenTrie, start: int) -> None:
        self.trie, self.start = trie, start

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        done = [self.trie.determined(row[self.start :]) is not None for row in input_ids.tolist()]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
