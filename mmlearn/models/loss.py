"""The training loss, computed here rather than by the model, for every family alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmlearn.models.prompting import IGNORE_INDEX


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Logits for a softmax: bf16/fp16 upcast to float32, float32 and float64 kept as they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the full logits, averaged over the tokens whose label is not
    ignored. The built-in losses reshape logits to `config.vocab_size`, which is wrong for IDEFICS's
    decoupled embedding (logits are `vocab_size + additional_vocab_size` wide): it crashes, or is
    silently wrong when the sizes happen to divide."""
    shift_logits = at_least_float32(logits[:, :-1])
    shift_labels = labels[:, 1:].to(logits.device)
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
    )
