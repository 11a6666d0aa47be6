"""transformers' generation hooks, used by packed candidate scoring (mmlearn/decoding/shared_prompt.py).

Checked with transformers 5.24.0 (`make test-newest` reruns the tests on the newest release). Without them packed scoring cannot reproduce what
`generate` feeds each family, so it stops with `PackedScoringUnavailable`, naming
`decoding.share_prompt=false` (scoring every full sequence, which needs none of them): never a
silently different score.
"""

from __future__ import annotations

import transformers

UNPACKED = "decoding.share_prompt=false"
HOOKS = ("_prepare_position_ids_for_generation", "_update_model_kwargs_for_generation")


class PackedScoringUnavailable(NotImplementedError):
    """This transformers release lacks a hook packed scoring is built on."""


def _missing(what: str) -> PackedScoringUnavailable:
    return PackedScoringUnavailable(
        f"transformers {transformers.__version__} no longer has {what}, which decoding.share_prompt=true "
        f"(packed candidate scoring) is built on; set {UNPACKED}, or install a release that has it (5.24.0 does)"
    )


def require_generation_hooks(model) -> None:
    """Before any forward pass: both hooks and the prefill-only input names are there (checked on the model, so a family that overrides
    one still qualifies). Raises `PackedScoringUnavailable` otherwise."""
    for hook in HOOKS:
        if not callable(getattr(model, hook, None)):
            raise _missing(f"GenerationMixin.{hook}")
    prefill_only_inputs()


def prepare_position_ids(model, input_ids, model_kwargs: dict):
    """`GenerationMixin._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)`: the position
    ids `generate` gives a (left-padded) prompt (Qwen2-VL's override returns 3-D rope positions).
    Fallback: `PackedScoringUnavailable`."""
    hook = getattr(model, HOOKS[0], None)
    if hook is None:
        raise _missing(f"GenerationMixin.{HOOKS[0]}")
    return hook(input_ids, model_kwargs)


def update_model_kwargs(model, outputs, model_kwargs: dict, num_new_tokens: int) -> dict:
    """`GenerationMixin._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder=False,
    num_new_tokens=T)`: the inputs `generate` carries to the next step after T new tokens (attention
    mask, position ids, `token_type_ids`, the family's own extras). Fallback: `PackedScoringUnavailable`."""
    hook = getattr(model, HOOKS[1], None)
    if hook is None:
        raise _missing(f"GenerationMixin.{HOOKS[1]}")
    return hook(outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=num_new_tokens)


def prefill_only_inputs() -> tuple[str, ...]:
    """`transformers.generation.utils.MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL`: the image/audio
    inputs `generate` feeds only to the prefill. Fallback: `PackedScoringUnavailable` (a guessed list
    could re-encode images after the prompt, or drop a family's new input)."""
    from transformers.generation import utils

    names = getattr(utils, "MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL", None)
    if names is None:
        raise _missing("transformers.generation.utils.MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL")
    return tuple(names)


def attn_implementation(config) -> str | None:
    """`PretrainedConfig._attn_implementation` (the attention implementation the loaded model runs;
    `from_pretrained(attn_implementation=...)` sets it and no public getter reads it back). Fallback:
    None, which packed scoring refuses by name (it needs sdpa or eager) and the vision cache's
    fingerprint records as "None"."""
    return getattr(config, "_attn_implementation", None)


__all__ = [
    "PackedScoringUnavailable",
    "attn_implementation",
    "prefill_only_inputs",
    "prepare_position_ids",
    "require_generation_hooks",
    "update_model_kwargs",
]
