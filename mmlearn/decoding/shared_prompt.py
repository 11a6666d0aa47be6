"""Candidate scoring that encodes each prompt (and its images) once: a prefill over the batch's
prompts, exactly as `generate` runs its first step, then the token rows of a `PrefixPlan` (the
candidates' prefixes whose next-token distributions the scores read, mmlearn/decoding/prefix_plan.py)
as continuations of that prompt's KV cache, many (row, sample) pairs per forward pass.

The steps are transformers' own generation hooks, so every family's specifics (Qwen2-VL's 3-D rope
positions, PaliGemma's `token_type_ids`, Mllama's cross-attention mask, IDEFICS's image states) are
handled by the family's code, the same code `generate` runs:
`_prepare_position_ids_for_generation` -> `prepare_inputs_for_generation(is_first_iteration=True)` ->
forward -> `_update_model_kwargs_for_generation(num_new_tokens=W)` -> per chunk of (row, sample)
pairs, the cache and the per-sample inputs are selected row by row -> `prepare_inputs_for_generation(
next_sequence_length=W)` -> forward. tests/test_shared_prompt_scoring.py checks, for every tiny
family, that the scores equal scoring each full (prompt + answer) sequence on its own.
"""

from __future__ import annotations

import copy
import inspect

import torch
from transformers.generation.utils import MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL

from mmlearn.decoding.prefix_plan import PrefixPlan, gather_scores, write_edges

# per-sample inputs whose batch dimension is not the first
BATCH_DIM = {"position_ids": lambda t: 1 if t.dim() == 3 else 0}


@torch.no_grad()
def score_with_shared_prompt(
    model,
    prompts: dict,
    plan: PrefixPlan,
    *,
    pad_token_id: int,
    rows_per_batch: int,
    device,
) -> torch.Tensor:
    """Every candidate's score (the sum of its terms in `plan`) for every prompt: an (n, c) tensor on
    CPU. `prompts` are left-padded prompt inputs (as for `generate`)."""
    # a PEFT model injects its adapter layers into the transformers model, whose generation hooks we call
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    input_ids = prompts["input_ids"].to(device)
    n = input_ids.shape[0]
    forward_args = inspect.signature(model.forward).parameters
    kwargs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in prompts.items() if k != "input_ids"}
    kwargs["use_cache"] = True
    if "position_ids" in forward_args:
        kwargs["position_ids"] = model._prepare_position_ids_for_generation(
            input_ids, {**kwargs, "input_ids": input_ids}
        )
    first_step = {"logits_to_keep": 1} if "logits_to_keep" in forward_args else {}
    prefill = model(
        **model.prepare_inputs_for_generation(input_ids, is_first_iteration=True, **kwargs, **first_step)
    )
    plan = plan.to(device)
    table = torch.zeros(n, plan.num_edges, device=device)  # log P(child | node) of every trie edge
    samples = torch.arange(n, device=device)
    if plan.root is not None:  # the answers' first tokens, read at the prompt's last position
        write_edges(table, samples, torch.full((n,), plan.root, device=device), plan, prefill.logits[:, -1])
    if plan.rows:
        cache = prefill.past_key_values
        for key in MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL:
            kwargs.pop(key, None)
        continued = _ContinuedInputs(model, prefill, kwargs)
        tokens = _row_tokens(plan.rows, pad_token_id).to(device)
        lengths = torch.tensor([len(row) for row in plan.rows], device=device)
        # (row, sample) pairs, rows longest first, so that a chunk's pairs have similar widths
        pairs = torch.arange(len(plan.rows) * n, device=device)
        for chunk in pairs.split(rows_per_batch):
            rows, samples = chunk // n, chunk % n
            width = int(lengths[rows].max())
            valid = torch.arange(width, device=device) < lengths[rows][:, None]
            row_kwargs = {k: _select(k, v, samples, n) for k, v in continued(width).items()}
            mask = row_kwargs["attention_mask"]
            mask[:, -width:] = valid.to(mask)
            ids = torch.cat([input_ids[samples], tokens[rows, :width]], dim=1)
            inputs = model.prepare_inputs_for_generation(
                ids, next_sequence_length=width, past_key_values=_select_cache(cache, samples), **row_kwargs
            )
            logits = model(**inputs).logits  # (pairs, width, vocab)
            nodes = plan.row_nodes[rows, :width]
            read = nodes >= 0
            write_edges(table, samples[:, None].expand_as(nodes)[read], nodes[read], plan, logits[read])
    return gather_scores(table, plan).cpu()


class _ContinuedInputs:
    """The per-sample inputs for `width` tokens after the prompt, as the family's own generation update
    extends them (attention mask, positions, token types, cross-attention masks), once per width."""

    def __init__(self, model, prefill, kwargs: dict) -> None:
        self.model, self.prefill, self.kwargs = model, prefill, kwargs
        self._by_width: dict[int, dict] = {}

    def __call__(self, width: int) -> dict:
        if width not in self._by_width:
            updated = self.model._update_model_kwargs_for_generation(
                self.prefill, dict(self.kwargs), is_encoder_decoder=False, num_new_tokens=width
            )
            updated.pop("past_key_values", None)
            self._by_width[width] = updated
        return self._by_width[width]


def _row_tokens(rows: list[tuple[int, ...]], pad_token_id: int) -> torch.Tensor:
    tokens = torch.full((len(rows), max(len(row) for row in rows)), pad_token_id, dtype=torch.long)
    for r, row in enumerate(rows):
        tokens[r, : len(row)] = torch.tensor(row)
    return tokens


def _select(key: str, value, samples: torch.Tensor, n: int):
    """The rows of a per-sample input for the given samples (repeats allowed); anything that is not
    per sample passes through."""
    if not torch.is_tensor(value):
        return value
    dim = BATCH_DIM.get(key, lambda t: 0)(value)
    if value.dim() == 0 or value.shape[dim] != n:
        return value
    return value.index_select(dim, samples)  # a new tensor: the caller may write into it


def _select_cache(cache, samples: torch.Tensor):
    """A copy of the prefill cache holding the given samples' rows; the prefill cache is untouched."""
    rows = copy.copy(cache)
    rows.layers = [copy.copy(layer) for layer in cache.layers]
    rows.batch_select_indices(samples)
    return rows
