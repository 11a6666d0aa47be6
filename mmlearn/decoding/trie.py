"""A token trie over every valid answer (+ end token), for `prefix_allowed_tokens_fn`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class TokenTrie:
    def __init__(self, sequences: Iterable[Sequence[int]]) -> None:
        self.root: dict[int, dict] = {}
        self.depth = 0
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(int(token), {})
            self.depth = max(self.depth, len(sequence))

    def next_tokens(self, prefix: Sequence[int]) -> list[int]:
        """Tokens that extend `prefix` towards a valid answer; empty once an answer is complete (or the
        prefix left the trie, e.g. the padding after a finished row)."""
        node = self.root
        for token in prefix:
            node = node.get(int(token))
            if node is None:
                return []
        return list(node)

    def determined(self, tokens: Sequence[int]) -> tuple[list[int], list[int]] | None:
        """Follow `tokens` from the root until the answer is determined (a single path to its end):
        (the tokens followed, the tokens that must come next), or None while choices remain. Tokens
        after the point where the answer was determined (padding of a finished row) are ignored."""
        node, path = self.root, []
        for token in [*tokens, None]:
            rest, tail = [], node
            while len(tail) == 1:
                only = next(iter(tail))
                rest.append(only)
                tail = tail[only]
            if not tail:
                return path, rest
            if token is None or int(token) not in node:
                return None
            path.append(int(token))
            node = node[int(token)]
        return None

    def sequences(self) -> list[tuple[int, ...]]:
        """Every complete path, for checks."""
        out, stack = [], [((), self.root)]
        while stack:
            path, node = stack.pop()
            if not node:
                out.append(path)
            stack.extend(((*path, token), child) for token, child in node.items())
        return sorted(out)


def answer_trie(prompt_format, tokenizer, answers: Iterable[str]) -> TokenTrie:
    """Answers tokenised exactly as training targets are (the prompt format's reply tokens, then the
    end token)."""
    return TokenTrie(prompt_format.answer_ids(tokenizer, answer) for answer in answers)
