"""Initialisation fixes that make a random tiny model behave like a trained one where it matters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


@torch.no_grad()
def scale_output_head(model, factor: float) -> None:
    """Scale the output head so logits can become confident.

    At the default init (std 0.02) a 64-wide model's largest reachable logit is about 1.3, so the
    softmax stays nearly uniform (loss stuck near log(vocab)) whatever an adapter learns. Trained
    checkpoints have no such ceiling; scaling the frozen head restores a realistic one.
    """
    model.get_output_embeddings().weight.mul_(factor)


def save_tiny(
    model_class,
    config,
    processor,
    output_dir: Path,
    *,
    seed: int,
    output_logit_scale: float,
    special_tokens: dict[str, str],
    adjust: Callable[[torch.nn.Module], None] | None = None,
) -> Path:
    """Seeded random weights, the scaled output head and the family's own fixes (`adjust`), the
    generation config's special tokens ({"eos": "<|im_end|>", ...}), then the checkpoint and the
    processor, saved as a released checkpoint is."""
    torch.manual_seed(seed)
    model = model_class(config)
    scale_output_head(model, output_logit_scale)
    if adjust is not None:
        with torch.no_grad():
            adjust(model)
    for kind, token in special_tokens.items():
        setattr(model.generation_config, f"{kind}_token_id", processor.tokenizer.convert_tokens_to_ids(token))
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return Path(output_dir)
