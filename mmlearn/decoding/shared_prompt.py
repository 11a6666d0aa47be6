"""Candidate scoring that encodes each prompt (and its images) once: a prefill over the batch's
prompts, exactly as `generate` runs its first step, then one more forward pass that feeds every token
row of a `PrefixPlan` (the candidates' prefixes whose next-token distributions the scores read,
mmlearn/decoding/prefix_plan.py) after the prompt's KV cache, packed into one sequence per sample
(cut into a few segments when the pack is much longer than the prompt). A tree attention mask lets
each packed token see the prompt and the earlier tokens of its own row, at the positions it would
have in its row, so a pass costs about what prefilling that many tokens costs: no per-row copies of
the prompt's cache, and logits only where a distribution is read.

The steps are transformers' own generation hooks, so every family's specifics (Qwen2-VL's 3-D rope
positions, PaliGemma's `token_type_ids`, Mllama's cross-attention mask, IDEFICS's image states) are
handled by the family's code, the same code `generate` runs (per segment width T; the private hooks
go through mmlearn/compat/transformers.py, which stops naming `decoding.share_prompt=false` when a
transformers release lacks one): `prepare_position_ids` -> `prepare_inputs_for_generation(
is_first_iteration=True)` -> forward -> `update_model_kwargs(num_new_tokens=T)` ->
`prepare_inputs_for_generation(next_sequence_length=T)`, whose consecutive positions become each
token's position in its row and whose 2-D attention mask becomes the tree mask -> forward. tests/test_shared_prompt_scoring.py checks,
for every tiny family, that the scores equal scoring each full (prompt + answer) sequence on its own.
"""

from __future__ import annotations

import copy
import inspect

import torch

from mmlearn.compat.transformers import (
    attn_implementation,
    prefill_only_inputs,
    prepare_position_ids,
    require_generation_hooks,
    update_model_kwargs,
)
from mmlearn.decoding.prefix_plan import PrefixPlan, Segment, gather_scores, write_edges

# per-sample inputs whose batch dimension is not the first
BATCH_DIM = {"position_ids": lambda t: 1 if t.dim() == 3 else 0}
# the attention implementations that take a custom 4-D mask, and the mask each takes
MASKS = {"sdpa": "bool", "eager": "additive"}
CACHE_KEYS = ("cache", "past_key_values")  # transformers >= 5.24 names the KV cache `cache`
UNPACKED = "decoding.share_prompt=false decoding.likelihood=full"  # the path that needs no custom mask


@torch.no_grad()
def score_with_shared_prompt(
    model,
    prompts: dict,
    plan: PrefixPlan,
    *,
    tokens_per_pass: int,
    segment_tokens: int | None,
    device,
) -> torch.Tensor:
    """Every candidate's score (the sum of its terms in `plan`) for every prompt: an (n, c) tensor on
    CPU. `prompts` are left-padded prompt inputs (as for `generate`). The packed rows go in segments of
    at most `segment_tokens` tokens (None: twice the prompt's length; a segment's attention costs its
    width times prompt + width, so a long pack is cheaper in pieces), at most `tokens_per_pass` packed
    tokens (samples x segment width) through the model at once."""
    # a PEFT model injects its adapter layers into the transformers model, whose generation hooks we call
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    require_generation_hooks(model)
    input_ids = prompts["input_ids"].to(device)
    n, length = input_ids.shape
    forward_args = inspect.signature(model.forward).parameters
    kwargs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in prompts.items() if k != "input_ids"}
    kwargs["use_cache"] = True
    if "position_ids" in forward_args:
        kwargs["position_ids"] = prepare_position_ids(model, input_ids, {**kwargs, "input_ids": input_ids})
    first_step = {"logits_to_keep": 1} if "logits_to_keep" in forward_args else {}
    prefill = model(
        **model.prepare_inputs_for_generation(input_ids, is_first_iteration=True, **kwargs, **first_step)
    )
    plan = plan.to(device)
    dtype = torch.promote_types(model.dtype, torch.float32)
    table = torch.zeros(
        n, plan.num_edges, dtype=dtype, device=device
    )  # log P(child | node) of every trie edge
    samples = torch.arange(n, device=device)
    if plan.root is not None:  # the answers' first tokens, read at the prompt's last position
        write_edges(table, samples, torch.full((n,), plan.root, device=device), plan, prefill.logits[:, -1])
    if plan.read_at.numel():
        _check_window(model, length + int(plan.depths.max()))
        for key in prefill_only_inputs():
            kwargs.pop(key, None)
        packed = _PackedPasses(model, prefill, kwargs, input_ids, forward_args)
        segments = plan.segments(segment_tokens or 2 * length)
        widest = max(segment.tokens.numel() for segment in segments)
        for chunk in samples.split(max(1, tokens_per_pass // widest)):
            cache = packed.cache if len(chunk) == n else _select_cache(packed.cache, chunk)
            for segment in segments:
                logits = packed(chunk, cache, segment)  # (samples, reads, vocab)
                reads = segment.read_at.numel()
                write_edges(
                    table,
                    chunk.repeat_interleave(reads),
                    segment.read_nodes.repeat(len(chunk)),
                    plan,
                    logits.reshape(len(chunk) * reads, -1),
                )
    return gather_scores(table, plan).cpu()


class _PackedPasses:
    """Forward passes of packed segments after the prompt: the family's generation hooks give the
    inputs for `width` tokens after the prompt (once per width); their 2-D attention mask becomes the
    tree mask and their consecutive positions each token's position in its row."""

    def __init__(self, model, prefill, kwargs: dict, input_ids: torch.Tensor, forward_args) -> None:
        self.model, self.prefill, self.kwargs, self.input_ids = model, prefill, kwargs, input_ids
        self.keep_logits = "logits_to_keep" in forward_args
        self.mask_kind = _mask_kind(model)
        self.cache_key = next(key for key in CACHE_KEYS if hasattr(prefill, key))
        self.cache = getattr(prefill, self.cache_key)
        self.prompt_mask = kwargs["attention_mask"].bool()
        self._by_width: dict[int, dict] = {}

    def continued(self, width: int) -> dict:
        if width not in self._by_width:
            updated = update_model_kwargs(self.model, self.prefill, dict(self.kwargs), width)
            for key in CACHE_KEYS:
                updated.pop(key, None)
            self._by_width[width] = updated
        return self._by_width[width]

    def __call__(self, chunk: torch.Tensor, cache, segment: Segment) -> torch.Tensor:
        """The next-token logits at the segment's reads for the chunk's samples, on `cache` (the
        chunk's prompt cache, left as it is: the pass appends to a shallow copy)."""
        model, n, width = self.model, self.input_ids.shape[0], segment.tokens.numel()
        ids = torch.cat([self.input_ids[chunk], segment.tokens.expand(len(chunk), -1)], dim=1)
        inputs = model.prepare_inputs_for_generation(
            ids,
            next_sequence_length=width,
            **{self.cache_key: _fork_cache(cache)},
            **{k: _select(k, v, chunk, n) for k, v in self.continued(width).items()},
        )
        inputs["attention_mask"] = _packed_mask(
            self.prompt_mask[chunk], segment.mask, self.mask_kind, model.dtype
        )
        if inputs.get("position_ids") is None:
            raise NotImplementedError(
                f"{type(model).__name__} gives no position ids for tokens after the prompt, so packed "
                f"candidate scoring cannot place them; use {UNPACKED}"
            )
        inputs["position_ids"] = inputs["position_ids"][..., :1] + segment.depths
        if self.keep_logits:
            inputs["logits_to_keep"] = segment.read_at
            return model(**inputs).logits
        return model(**inputs).logits[:, segment.read_at]


def _mask_kind(model) -> str:
    implementation = attn_implementation(model.config.get_text_config())
    if implementation not in MASKS:
        raise ValueError(
            f"decoding.share_prompt=true packs the candidates behind a custom attention mask, which "
            f"attn_implementation={implementation!r} cannot take ({sorted(MASKS)} can); set "
            f"model.attn_implementation=sdpa for evaluation, or {UNPACKED}"
        )
    return MASKS[implementation]


def _check_window(model, span: int) -> None:
    """A custom mask replaces the family's sliding-window mask: refuse spans the window would cut."""
    text = model.config.get_text_config()
    window = getattr(text, "sliding_window", None)
    if window and "sliding_attention" in (getattr(text, "layer_types", None) or ()) and span >= window:
        raise ValueError(
            f"a prompt plus candidate prefix spans {span} tokens, past the language model's sliding "
            f"window ({window}), which packed candidate scoring does not apply; use {UNPACKED}"
        )


def _packed_mask(prompt_mask: torch.Tensor, tree: torch.Tensor, kind: str, dtype) -> torch.Tensor:
    """(samples, 1, packed, prompt + packed): each packed token sees the sample's prompt (not its
    padding) and its own row up to itself. sdpa takes it as bool, eager as additive."""
    s, width = prompt_mask.shape[0], tree.shape[0]
    visible = torch.cat(
        [prompt_mask[:, None, None, :].expand(s, 1, width, -1), tree.expand(s, 1, width, width)], dim=-1
    )
    if kind == "bool":
        return visible
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(
        ~visible, torch.finfo(dtype).min
    )


def _select(key: str, value, samples: torch.Tensor, n: int):
    """The rows of a per-sample input for the given samples; anything that is not per sample passes
    through."""
    if not torch.is_tensor(value):
        return value
    dim = BATCH_DIM.get(key, lambda t: 0)(value)
    if value.dim() == 0 or value.shape[dim] != n:
        return value
    return value.index_select(dim, samples)


def _fork_cache(cache):
    """A shallow copy of a cache: a forward pass appends to it (new tensors) and leaves `cache` as it is."""
    fork = copy.copy(cache)
    fork.layers = [copy.copy(layer) for layer in cache.layers]
    return fork


def _select_cache(cache, samples: torch.Tensor):
    """A copy of the prefill cache holding the given samples' rows; the prefill cache is untouched."""
    rows = _fork_cache(cache)
    rows.batch_select_indices(samples)
    return rows
