"""Scoring candidates on a shared prompt KV cache gives the same log-likelihoods as scoring every full
(prompt + answer) training sequence on its own, for every model family, with adapters and with
in-context examples, a pass over the whole batch or over part of it. The constrained likelihood equals
the same full-sequence logits renormalised, token by token, over the tokens that continue a valid
answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from mmlearn.decoding.prefix_plan import plan_prefixes
from mmlearn.decoding.score import score_candidates
from mmlearn.decoding.shared_prompt import _check_window, _mask_kind, score_with_shared_prompt
from mmlearn.decoding.trie import TokenTrie, answer_trie
from mmlearn.models.adapters import attach_adapter
from mmlearn.models.prompting import IGNORE_INDEX
from mmlearn.models.towers import TOWERS, TowerPlan
from tests.conftest import CONF, TEXT_ENCODER_PRESETS, compose

TINY = sorted(p.stem for p in (CONF / "model").glob("*_tiny.yaml") if p.stem not in TEXT_ENCODER_PRESETS)
ANSWERS = ["red", "blue", "not_informative", "red urgent", '["red", "urgent"]', "[]"]
PROMPTS = ["Which colour is this?", "Is it urgent? Answer yes or no, please.", "x"]
# The two paths run different shapes (a packed tree-masked pass after a KV cache against separate
# padded sequences), so other reduction orders and, across CPUs, other kernels: in float32 a summed
# log-likelihood of magnitude ~50 moves by ~1e-5 from that alone, within a factor of ten of any honest
# tolerance. The models compared here run in float64, where the reordering moves it by ~1e-13 (eps
# 2.2e-16 times accumulation lengths of a few hundred at magnitudes of ~50); TOLERANCE leaves a 1000x
# margin over that, while a token scored at the wrong position or behind the wrong mask moves a score
# by ~1e-1.
# Gemma 2 (PaliGemma 2's language model) is the exception: its RMSNorm computes in float32 whatever the
# model's dtype (`x.float()`, transformers' Gemma2RMSNorm), so a norm input that differs by float64
# noise can round to a neighbouring float32 (6e-8 relative): measured 7.6e-7 at a score of 28; 1e-5
# leaves a 10x margin and is still four orders below a scoring mistake.
FLOAT64 = ["model.torch_dtype=float64"]
TOLERANCE = {"atol": 1e-9, "rtol": 0}
FLOAT32_NORMS = {"paligemma2_tiny": {"atol": 1e-5, "rtol": 0}}


def _images():
    return [
        [Image.new("RGB", (56, 56), (200, 30, 30))],
        [Image.new("RGB", (40, 64), (20, 30, 200))],
        [Image.new("RGB", (56, 56), (0, 200, 0))],
    ]


@pytest.mark.parametrize("family", TINY)
def test_closed_answer_decoders_use_the_trained_reply_tokens(family, offline_env):
    """The constrained trie, the score candidates and the generation budget use the tokens a training
    batch supervises (LLaVA's and SmolVLM's reply follows "ASSISTANT:" with a space, so "red" alone
    tokenises differently)."""
    cfg = compose([f"model={family}", "paths.root_dir=/tmp/mmlearn-shared-prompt"])
    spec = instantiate(cfg.model, _convert_="all")
    processor = spec.load_processor()
    trained = _answer_ids(spec, processor, _images(), ANSWERS)
    assert answer_trie(spec.prompt, processor.tokenizer, ANSWERS).sequences() == sorted(map(tuple, trained))
    assert [spec.prompt.answer_ids(processor.tokenizer, a) for a in ANSWERS] == trained


def _with_lora(cfg, spec):
    """A LoRA adapter with random B (a fresh adapter changes nothing, which would prove nothing)."""
    plan = TowerPlan(
        modes={"vision": "frozen", "projector": "frozen", "language": "lora"}, lr=dict.fromkeys(TOWERS)
    )
    adapter = instantiate(cfg.peft.adapter, r=4, lora_alpha=8, lora_dropout=0.0)
    model = attach_adapter(spec.load_model(quantization=None), spec, adapter, plan, quantized=False).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def _answer_ids(spec, processor, images, answers, **extra):
    extra = {"shots": extra["shots"][:1] * len(answers)} if extra else {}
    encoded = spec.prompt.encode(
        processor, PROMPTS[:1] * len(answers), images[:1] * len(answers), answers, **extra
    )
    return [label[label != IGNORE_INDEX].tolist() for label in encoded["labels"]]


def _shared(model, spec, processor, images, tokens_per_pass, likelihood="full", segment_tokens=None, **extra):
    answer_ids = _answer_ids(spec, processor, images, ANSWERS, **extra)
    plan = plan_prefixes(answer_ids, likelihood)
    assert plan.rows  # some prefix beyond the prompt is fed, so the continuation path is exercised
    return score_with_shared_prompt(
        model,
        spec.prompt.encode(processor, PROMPTS, images, **extra),
        plan,
        tokens_per_pass=tokens_per_pass,
        segment_tokens=segment_tokens,
        device="cpu",
    )


def _both(model, spec, processor, images, tokens_per_pass, **extra):
    batch = {"prompts": PROMPTS, "images": images, **({"shots": extra["shots"]} if extra else {})}
    full = score_candidates(
        model, processor, spec.prompt, batch, ANSWERS, normalize="sum", rows_per_batch=64, device="cpu"
    )
    return full, _shared(model, spec, processor, images, tokens_per_pass, **extra)


@torch.no_grad()
def _constrained_reference(model, spec, processor, images):
    """Each full (prompt + answer) sequence on its own; at every answer token, log-softmax over the
    tokens that the answer trie allows after the answer tokens so far."""
    answer_ids = _answer_ids(spec, processor, images, ANSWERS)
    trie = TokenTrie(answer_ids)
    out = torch.zeros(len(PROMPTS), len(ANSWERS), dtype=torch.float64)
    for i in range(len(PROMPTS)):
        inputs = spec.prompt.encode(
            processor, PROMPTS[i : i + 1] * len(ANSWERS), images[i : i + 1] * len(ANSWERS), ANSWERS
        )
        labels = inputs.pop("labels")
        logits = model(**inputs).logits
        for j, ids in enumerate(answer_ids):
            positions = (labels[j] != IGNORE_INDEX).nonzero()[:, 0] - 1  # logits predicting each answer token
            assert labels[j, positions + 1].tolist() == ids
            for t, position in enumerate(positions.tolist()):
                allowed = trie.next_tokens(ids[:t])
                row = logits[j, position]
                out[i, j] += row[ids[t]] - row[allowed].logsumexp(dim=0)
    return out


@pytest.mark.parametrize("family", TINY)
def test_shared_prompt_scores_equal_full_sequence_scores(family, offline_env):
    cfg = compose([f"model={family}", "paths.root_dir=/tmp/mmlearn-shared-prompt", *FLOAT64])
    spec = instantiate(cfg.model, _convert_="all")
    processor = spec.load_processor()
    model = _with_lora(cfg, spec)
    tolerance = FLOAT32_NORMS.get(family, TOLERANCE)
    # one sample per pass (on a copy of its rows of the prompt cache)
    full, shared = _both(model, spec, processor, _images(), tokens_per_pass=1)
    assert full.shape == shared.shape == (len(PROMPTS), len(ANSWERS))
    assert full.dtype == shared.dtype == torch.float64  # what the tolerances are derived for
    assert len({tuple(row.tolist()) for row in full}) == len(PROMPTS)  # the prompts really differ
    torch.testing.assert_close(shared, full, **tolerance)
    # every row a segment of its own, the whole batch at once
    rows_apart = _shared(model, spec, processor, _images(), tokens_per_pass=10**6, segment_tokens=1)
    torch.testing.assert_close(rows_apart, full, **tolerance)
    # the whole batch in one pass (on the prompt cache itself)
    constrained = _shared(model, spec, processor, _images(), tokens_per_pass=10**6, likelihood="constrained")
    torch.testing.assert_close(
        constrained, _constrained_reference(model, spec, processor, _images()), **tolerance
    )
    # the model forced to answer validly: a distribution over the answers, unlike the full likelihood
    torch.testing.assert_close(constrained.exp().sum(dim=1), torch.ones(len(PROMPTS), dtype=torch.float64))
    assert (full.exp().sum(dim=1) < 0.99).all()


def test_shared_prompt_scores_with_in_context_examples(offline_env):
    cfg = compose(["model=qwen2vl_tiny", "paths.root_dir=/tmp/mmlearn-shared-prompt", *FLOAT64])
    spec = instantiate(cfg.model, _convert_="all")
    processor = spec.load_processor()
    model = spec.load_model(quantization=None).eval()
    shot_image = Image.new("RGB", (48, 48), (90, 90, 10))
    shots = [[("An example?", [shot_image], "blue")], [], [("Another?", [], "red"), ("Third?", [], "[]")]]
    full, shared = _both(model, spec, processor, _images(), tokens_per_pass=10**6, shots=shots)
    torch.testing.assert_close(shared, full, **TOLERANCE)
    without, _ = _both(model, spec, processor, _images(), tokens_per_pass=10**6)
    assert not torch.allclose(full[0], without[0])  # the examples are part of what is scored


def _config(**text):
    class Text:
        _attn_implementation = "sdpa"
        sliding_window = None
        layer_types = None

    for key, value in text.items():
        setattr(Text, key, value)
    return SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: Text))


def test_packed_scoring_refuses_what_its_mask_cannot_express():
    """A custom 4-D mask replaces the family's own: flash attention takes none, and a sliding window
    would no longer be applied, so both are refused by name instead of scoring wrongly."""
    assert _mask_kind(_config()) == "bool" and _mask_kind(_config(_attn_implementation="eager")) == "additive"
    with pytest.raises(ValueError, match=r"attn_implementation='flash_attention_2'.*share_prompt=false"):
        _mask_kind(_config(_attn_implementation="flash_attention_2"))
    sliding = _config(sliding_window=64, layer_types=["sliding_attention", "full_attention"])
    _check_window(sliding, 63)
    _check_window(_config(sliding_window=64, layer_types=["full_attention"]), 500)  # window unused
    with pytest.raises(ValueError, match=r"spans 64 tokens, past the language model's sliding window \(64\)"):
        _check_window(sliding, 64)
