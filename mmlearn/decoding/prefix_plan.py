"""Which next-token distributions a candidate score needs, and which token rows to feed to get them.

A candidate's score is a sum of terms log P(token | prompt + prefix), one per answer token. Every such
term is an edge (prefix -> token) of the token trie over the candidates; candidates that share a prefix
share its distribution, so each distribution is read once and every edge is looked up once.

- `full` likelihood: every edge counts, normalised over the whole vocabulary.
- `constrained` likelihood: each step is normalised over the tokens that continue some valid answer.
  A prefix with a single such token contributes log 1 = 0, so only prefixes shared by two or more
  candidates matter, and nothing after the point where a candidate is determined is fed at all.

Rows are the longest needed prefixes (a needed prefix that extends no other); feeding a row after the
prompt gives, at its position i, the distribution after its first i + 1 tokens. The empty prefix is the
prompt's own last position. The rows are packed one after another into one sequence fed after the
prompt: each packed token sees the prompt and the tokens before it in its own row (`tree_mask`), at
the position it would have in its row (`depths`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import pairwise

import torch

from mmlearn.models.loss import at_least_float32

LIKELIHOODS = ("full", "constrained")


@dataclass(frozen=True)
class Segment:
    """A run of whole rows of the packed sequence, fed in one forward pass."""

    tokens: torch.Tensor
    depths: torch.Tensor
    read_at: torch.Tensor
    read_nodes: torch.Tensor
    mask: torch.Tensor  # tree_mask(depths)


@dataclass(frozen=True)
class PrefixPlan:
    restricted: bool  # normalise over each prefix's trie children instead of the vocabulary
    rows: list[tuple[int, ...]]  # token rows fed after the prompt
    tokens: torch.Tensor  # (packed,): the rows one after another
    depths: torch.Tensor  # (packed,): each packed token's index in its row
    read_at: torch.Tensor  # (reads,): the packed positions whose next-token distribution is read
    read_nodes: torch.Tensor  # (reads,): the node read there
    children: torch.Tensor  # (nodes, max_children): each node's next tokens, padded with 0
    child_edges: torch.Tensor  # (nodes, max_children): their edge ids, -1 in the padding
    edge_candidates: torch.Tensor  # (terms,): the candidate of each term of a score
    edge_ids: torch.Tensor  # (terms,): the edge of each term
    num_edges: int
    root: int | None  # the node index of the empty prefix (read from the prompt's last position)
    answer_lengths: tuple[int, ...]  # each candidate's token count, end token included

    @property
    def num_candidates(self) -> int:
        return len(self.answer_lengths)

    def segments(self, width: int) -> list[Segment]:
        """The packed sequence cut at row boundaries into pieces of at most `width` tokens (a longer
        row is a piece of its own), each with the reads that fall in it, positions relative to it."""
        starts = [*(self.depths == 0).nonzero()[:, 0].tolist(), self.tokens.numel()]
        bounds, first = [], 0
        for start, end in pairwise(starts):
            if end - first > width and start > first:
                bounds.append((first, start))
                first = start
        bounds.append((first, starts[-1]))
        pieces = []
        for start, end in bounds:
            inside = (self.read_at >= start) & (self.read_at < end)
            pieces.append(
                Segment(
                    self.tokens[start:end],
                    self.depths[start:end],
                    self.read_at[inside] - start,
                    self.read_nodes[inside],
                    tree_mask(self.depths[start:end]),
                )
            )
        return pieces

    def to(self, device) -> PrefixPlan:
        """The plan with its index tensors on `device` (where the model's logits are)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return PrefixPlan(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in moved.items()})


def plan_prefixes(answer_ids: Sequence[Sequence[int]], likelihood: str) -> PrefixPlan:
    """The plan for scoring `answer_ids` (each candidate's tokens, end token included; all distinct,
    none a prefix of another, which the end token guarantees)."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"decoding.likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    restricted = likelihood == "constrained"
    answers = [tuple(int(t) for t in ids) for ids in answer_ids]
    children: dict[tuple[int, ...], list[int]] = {}
    for ids in answers:
        for depth in range(len(ids)):
            tokens = children.setdefault(ids[:depth], [])
            if ids[depth] not in tokens:
                tokens.append(ids[depth])
    # the prefixes whose distribution some term reads (a single continuation is log 1 when restricted)
    nodes = sorted((p for p, tokens in children.items() if len(tokens) >= 2 or not restricted), key=len)
    node_index = {prefix: k for k, prefix in enumerate(nodes)}
    edges: dict[tuple[tuple[int, ...], int], int] = {}
    for prefix in nodes:
        for token in children[prefix]:
            edges[(prefix, token)] = len(edges)
    edge_candidates, edge_ids = [], []
    for j, ids in enumerate(answers):
        for depth in range(len(ids)):
            edge = edges.get((ids[:depth], ids[depth]))
            if edge is not None:
                edge_candidates.append(j)
                edge_ids.append(edge)
    rows = _longest_prefixes([prefix for prefix in nodes if prefix])
    tokens = [token for row in rows for token in row]
    depths = [i for row in rows for i in range(len(row))]
    read_at, read_nodes, read = [], [], set()
    for position, depth in enumerate(depths):
        prefix = tuple(tokens[position - depth : position + 1])  # its row, up to this token
        if prefix in node_index and prefix not in read:  # each node is read once
            read.add(prefix)
            read_at.append(position)
            read_nodes.append(node_index[prefix])
    fan_out = max((len(children[prefix]) for prefix in nodes), default=0)
    child_tokens = torch.zeros((len(nodes), fan_out), dtype=torch.long)
    child_edges = torch.full((len(nodes), fan_out), -1, dtype=torch.long)
    for k, prefix in enumerate(nodes):
        for slot, token in enumerate(children[prefix]):
            child_tokens[k, slot] = token
            child_edges[k, slot] = edges[(prefix, token)]
    return PrefixPlan(
        restricted=restricted,
        rows=rows,
        tokens=torch.tensor(tokens, dtype=torch.long),
        depths=torch.tensor(depths, dtype=torch.long),
        read_at=torch.tensor(read_at, dtype=torch.long),
        read_nodes=torch.tensor(read_nodes, dtype=torch.long),
        children=child_tokens,
        child_edges=child_edges,
        edge_candidates=torch.tensor(edge_candidates, dtype=torch.long),
        edge_ids=torch.tensor(edge_ids, dtype=torch.long),
        num_edges=len(edges),
        root=node_index.get(()),
        answer_lengths=tuple(len(ids) for ids in answers),
    )


def _longest_prefixes(prefixes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The prefixes that extend no other one in the set, longest first."""
    extended = {prefix[:depth] for prefix in prefixes for depth in range(len(prefix))}
    return sorted((p for p in prefixes if p not in extended), key=lambda p: (-len(p), p))


def tree_mask(depths: torch.Tensor) -> torch.Tensor:
    """(packed, packed) bool: packed token q sees token k when k is q or one of the tokens before it in
    its row (a row starts `depths[q]` tokens before q)."""
    position = torch.arange(depths.numel(), device=depths.device)
    q, k = position[:, None], position[None, :]
    return (k <= q) & (k >= q - depths[:, None])


def edge_log_probs(logits: torch.Tensor, nodes: torch.Tensor, plan: PrefixPlan) -> torch.Tensor:
    """log P(child | node) for every child slot of the given nodes: (positions, max_children).
    `logits` are the next-token logits read at those nodes, (positions, vocab)."""
    logits = at_least_float32(logits)
    picked = logits.gather(1, plan.children[nodes])
    if plan.restricted:
        real = plan.child_edges[nodes] >= 0
        norm = picked.masked_fill(~real, float("-inf")).logsumexp(dim=-1, keepdim=True)
    else:
        norm = logits.logsumexp(dim=-1, keepdim=True)
    return picked - norm


def write_edges(table: torch.Tensor, samples: torch.Tensor, nodes: torch.Tensor, plan: PrefixPlan, logits):
    """Store log P(child | node) for the (sample, node) pairs read at these positions in the
    (samples, edges) table. The plan, the indices, the logits and the table share one device."""
    values = edge_log_probs(logits, nodes, plan)
    edge = plan.child_edges[nodes]
    real = edge >= 0
    table[samples[:, None].expand_as(edge)[real], edge[real]] = values[real].to(table.dtype)


def gather_scores(edge_logp: torch.Tensor, plan: PrefixPlan) -> torch.Tensor:
    """Candidate scores (samples, candidates) from the (samples, edges) table: the sum of each
    candidate's terms (0 for a candidate with none, the only valid answer)."""
    terms = edge_logp[:, plan.edge_ids]
    scores = torch.zeros(
        edge_logp.shape[0], plan.num_candidates, dtype=edge_logp.dtype, device=edge_logp.device
    )
    return scores.index_add_(1, plan.edge_candidates, terms)
