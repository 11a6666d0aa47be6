"""Greedy `generate` on left-padded prompts: the one call behind `decoding=generate` and
`decoding=constrained`, and the arguments mmlearn.json records for reproducing it with plain HF."""

from __future__ import annotations

import torch

from mmlearn.decoding.context import DecodingContext


def stop_token_ids(generation_config, tokenizer) -> list[int]:
    """The tokenizer's end token and every end token of the checkpoint's generation config: passing one
    id to `generate` replaces the config's list (Qwen2-VL also ends on <|endoftext|>, Llama 3 on three)."""
    configured = generation_config.eos_token_id
    configured = configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(i for i in [tokenizer.eos_token_id, *configured] if i is not None))


def generate_kwargs(context: DecodingContext, max_new_tokens: int) -> dict:
    """Greedy, up to `max_new_tokens`, stopping at any of the checkpoint's end tokens."""
    tokenizer = context.tokenizer
    return {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": stop_token_ids(context.model.generation_config, tokenizer),
    }


@torch.no_grad()
def generate_answers(
    context: DecodingContext, inputs: dict, *, max_new_tokens: int, decode: bool = True, **overrides
):
    """Greedy answers to left-padded prompts: the texts, or (decode=False) the new token ids.
    `overrides` go to `generate` on top of `generate_kwargs` (a logits processor, stopping criteria)."""
    kwargs = {**generate_kwargs(context, max_new_tokens), **overrides}
    new_tokens = context.model.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1] :]
    return context.tokenizer.batch_decode(new_tokens, skip_special_tokens=True) if decode else new_tokens
