"""One vector per sequence from a model's last hidden state, whichever side the batch is padded on.

`last`: the last non-padding token (a decoder's summary of everything before it; with left padding it
is the final position, with right padding the position before the first pad). `cls`: the first
non-padding token (an encoder's [CLS]/<s>). `mean`: the average over the non-padding tokens."""

from __future__ import annotations

import torch

POOLINGS = ("last", "cls", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """hidden: (batch, seq, width); attention_mask: (batch, seq), 1 on real tokens. Returns (batch, width)."""
    if how not in POOLINGS:
        raise ValueError(f"head.module.pooling must be one of {POOLINGS} (or auto), got {how!r}")
    mask = attention_mask.to(hidden.device).bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a sequence of the batch has no token to pool (its attention mask is all zeros)")
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    positions = torch.arange(mask.shape[1], device=hidden.device).expand_as(mask)
    if how == "last":
        return hidden[rows, torch.where(mask, positions, -1).amax(dim=1)]
    if how == "cls":
        return hidden[rows, torch.where(mask, positions, mask.shape[1]).amin(dim=1)]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1)
