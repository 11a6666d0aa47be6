"""Greedy generation that can only produce a valid answer: a token trie over the task's answers.

Multi-label answers are JSON arrays of distinct labels in label order, so the trie holds the exact
tokenisation of each of the 2^K arrays, tokenised whole as the training targets are. A per-label state
machine would scale further, but BPE merges across `", "` boundaries would make its token sequences
differ from the training targets'; 2^K stays small for the label sets we serve (decoding.max_candidates
guards the size).
"""

from __future__ import annotations

from mmlearn.decoding.base import Decoded, Decoder, require_closed_answers
from mmlearn.decoding.trie import TokenTrie, answer_trie


class ConstrainedDecoder(Decoder):
    name = "constrained"

    def __init__(self, *, max_candidates: int) -> None:
        self.max_candidates = max_candidates
        self._tries: dict[tuple[int, int], TokenTrie] = {}

    def check(self, task) -> None:
        require_closed_answers(self, task, self.max_candidates)

    def trie(self, task, tokenizer) -> TokenTrie:
        key = (id(task), id(tokenizer))
        if key not in self._tries:
            answers = [answer for answer, _ in require_closed_answers(self, task, self.max_candidates)]
            self._tries[key] = answer_trie(tokenizer, answers)
        return self._tries[key]

    def decode(self, module, batch: dict) -> list[Decoded]:
        tokenizer = module.processor.tokenizer
        trie = self.trie(module.task, tokenizer)
        start = batch["inputs"]["input_ids"].shape[1]  # left padding: every row's answer starts here
        finished = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

        def allowed(batch_id, input_ids):
            return trie.next_tokens(input_ids[start:].tolist()) or [finished]

        outputs = module.generate_answers(
            batch["inputs"], max_new_tokens=trie.depth, prefix_allowed_tokens_fn=allowed
        )
        return [
            Decoded(raw, module.task.parse(raw, sample))
            for raw, sample in zip(outputs, batch["samples"], strict=True)
        ]
