"""Candidate scoring that encodes each prompt (and its images) once: a prefill over the batch's
prompts, exactly as `generate` runs its first step, then the candidate answers as continuations of
that prompt's KV cache, many candidates per forward pass.

The steps are transformers' own generation hooks, so every family's specifics (Qwen2-VL's 3-D rope
positions, PaliGemma's `token_type_ids`, Mllama's cross-attention mask, IDEFICS's image states) are
handled by the family's code, the same code `generate` runs:
`_prepare_position_ids_for_generation` -> `prepare_inputs_for_generation(is_first_iteration=True)` ->
forward -> `_update_model_kwargs_for_generation(num_new_tokens=W)` -> per chunk of (sample, candidate)
rows, the cache and the per-sample inputs are selected row by row -> `prepare_inputs_for_generation(
next_sequence_length=W)` -> forward. tests/test_shared_prompt_scoring.py checks, for every tiny
family, that the scores equal scoring each full (prompt + answer) sequence on its own.
"""

from __future__ import annotations

import copy
import inspect

import torch
from transformers.generation.utils import MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL

# per-sample inputs whose batch dimension is not the first
BATCH_DIM = {"position_ids": lambda t: 1 if t.dim() == 3 else 0}


@torch.no_grad()
def score_with_shared_prompt(
    model, prompts: dict, answer_ids: list[list[int]], *, pad_token_id: int, rows_per_batch: int, device
) -> torch.Tensor:
    """Sum of log P(answer tokens | prompt) for every (prompt, candidate): an (n, c) tensor on CPU.
    `prompts` are left-padded prompt inputs (as for `generate`); `answer_ids` are the scored tokens
    of each candidate, the end token included."""
    # a PEFT model injects its adapter layers into the transformers model, whose generation hooks we call
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    input_ids = prompts["input_ids"].to(device)
    n, c = input_ids.shape[0], len(answer_ids)
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
    first = prefill.logits[:, -1].float().log_softmax(dim=-1)  # (n, vocab): each answer's first token
    tokens, lengths = _candidate_tokens(answer_ids, pad_token_id, device)
    cache = prefill.past_key_values
    for key in MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL:
        kwargs.pop(key, None)
    continued = _ContinuedInputs(model, prefill, kwargs)
    # (candidate, sample) rows, longest answers first, so that a chunk's rows have similar widths
    order = sorted(range(c), key=lambda j: -len(answer_ids[j]))
    rows = torch.tensor([j * n + i for j in order for i in range(n)], device=device)
    flat = first[:, tokens[:, 0]].T.reshape(-1)  # first-token scores, (candidate, sample) order
    for chunk in rows.split(rows_per_batch):
        candidates, samples = chunk // n, chunk % n
        width = int(lengths[candidates].max()) - 1  # the last token is predicted, never fed
        if width == 0:
            continue
        fed = tokens[candidates, :width]
        valid = torch.arange(width, device=device) < (lengths[candidates] - 1)[:, None]
        row_kwargs = {k: _select(k, v, samples, n) for k, v in continued(width).items()}
        mask = row_kwargs["attention_mask"]
        mask[:, -width:] = valid.to(mask)
        ids = torch.cat([input_ids[samples], fed], dim=1)
        inputs = model.prepare_inputs_for_generation(
            ids, next_sequence_length=width, past_key_values=_select_cache(cache, samples), **row_kwargs
        )
        logits = model(**inputs).logits[valid].float()  # (answer tokens, vocab)
        target = tokens[candidates, 1 : width + 1][valid]
        token_logp = logits.log_softmax(dim=-1).gather(1, target[:, None]).squeeze(1)
        flat[chunk] += torch.zeros(len(chunk), device=device).index_add_(0, valid.nonzero()[:, 0], token_logp)
    return flat.view(c, n).T.cpu()


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


def _candidate_tokens(answer_ids, pad_token_id, device):
    width = max(len(ids) for ids in answer_ids)
    tokens = torch.full((len(answer_ids), width), pad_token_id, dtype=torch.long)
    for j, ids in enumerate(answer_ids):
        tokens[j, : len(ids)] = torch.tensor(ids)
    lengths = torch.tensor([len(ids) for ids in answer_ids])
    return tokens.to(device), lengths.to(device)


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
