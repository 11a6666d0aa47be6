"""Invariants every model family must keep, checked on each `conf/model/*_tiny.yaml` preset:
the tower map covers the model, only the intended parameters train, a saved adapter reloads to
identical logits, a merged model generates exactly what base + adapter generates, DoRA trains."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from mmlearn.models.adapters import attach_adapter, load_adapter
from mmlearn.models.loss import causal_lm_loss
from mmlearn.models.towers import TOWERS, TowerPlan, check_tower_map, parameter_groups, tower_of
from tests.conftest import CONF, TEXT_ENCODER_PRESETS, compose

TINY = sorted(p.stem for p in (CONF / "model").glob("*_tiny.yaml") if p.stem not in TEXT_ENCODER_PRESETS)


def _plan(vision="frozen", projector="frozen", language="lora", **lr):
    """Tower modes, and per-tower learning rates given as e.g. projector_lr=1e-3."""
    modes = {"vision": vision, "projector": projector, "language": language}
    return TowerPlan(modes=modes, lr={t: lr.get(f"{t}_lr") for t in TOWERS})


def _adapter(cfg, use_dora=False):
    return instantiate(cfg.peft.adapter, r=4, lora_alpha=8, lora_dropout=0.0, use_dora=use_dora)


@pytest.fixture(scope="module", params=TINY)
def family(request, offline_env):
    cfg = compose([f"model={request.param}", "paths.root_dir=/tmp/mmlearn-invariants"])
    spec = instantiate(cfg.model, _convert_="all")
    processor = spec.load_processor()
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    prompts = ["Which colour is this?", "Is it urgent? Answer yes or no."]
    inputs = spec.prompt.encode(processor, prompts, [[image], [image]])
    return cfg, spec, processor, inputs


def _nudge(model):
    """Random adapter weights (LoRA B starts at zero, so an untrained adapter changes nothing)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def test_every_parameter_belongs_to_a_tower(family):
    _, spec, _, _ = family
    model = spec.load_model()
    check_tower_map(model, spec.towers)
    assert {tower_of(n, spec.towers) for n, _ in model.named_parameters()} == set(TOWERS)


def test_language_lora_trains_only_language_lora_weights(family):
    cfg, spec, _, _ = family
    model = attach_adapter(spec.load_model(), spec, _adapter(cfg), _plan(), quantized=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {tower_of(n, spec.towers) for n in trainable} == {"language"}


def test_vision_lora_and_full_projector(family):
    cfg, spec, _, _ = family
    if not spec.lora_target_modules.get("vision"):
        pytest.skip(f"{spec.name} has no vision LoRA targets")
    plan = _plan(vision="lora", projector="full", language="frozen", projector_lr=1e-3)
    if any(p.startswith(q + ".") for p in spec.towers["projector"] for q in spec.towers["vision"]):
        with pytest.raises(ValueError, match="set projector=full too"):
            attach_adapter(spec.load_model(), spec, _adapter(cfg), _plan(vision="full"), quantized=False)
    model = attach_adapter(spec.load_model(), spec, _adapter(cfg), plan, quantized=False)
    by_tower = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            by_tower.setdefault(tower_of(name, spec.towers), set()).add("lora" if "lora_" in name else "full")
    assert by_tower == {"vision": {"lora"}, "projector": {"full"}}
    groups = {g["name"]: g for g in parameter_groups(model, spec, plan)}
    assert groups["projector"]["lr"] == 1e-3 and "lr" not in groups["vision"]


def test_saved_adapter_reloads_to_identical_logits(family, tmp_path):
    cfg, spec, _, inputs = family
    model = attach_adapter(spec.load_model(), spec, _adapter(cfg), _plan(), quantized=False)
    _nudge(model)
    model.eval()
    with torch.no_grad():
        before = model(**inputs).logits
        model.save_pretrained(tmp_path / "adapter")
        reloaded = load_adapter(spec.load_model(), tmp_path / "adapter").eval()
        after = reloaded(**inputs).logits
        base = spec.load_model().eval()(**inputs).logits
    assert torch.equal(before, after)
    assert not torch.allclose(before, base)


# Merging adds B @ A into W, which rounds differently from computing W x + B (A x): in float32 the
# logits of the two move by ~1e-6, and a greedy step whose top two logits are that close could flip.
# The comparison runs in float64 (the rounding moves logits by ~1e-14, eps 2.2e-16 at magnitudes of ~10
# over accumulation lengths of ~100; measured 0 to 5e-14 over the seven families); 1e-9 leaves a 10^4 margin, while an unmerged or wrongly scaled
# adapter moves them by ~1e-1. Gemma 2's RMSNorm computes in float32 whatever the dtype (transformers'
# Gemma2RMSNorm), so PaliGemma 2 is compared at float32 rounding.
MERGE_TOLERANCE = {"atol": 1e-9, "rtol": 1e-9}
FLOAT32_NORMS = {"paligemma2_tiny": {"atol": 1e-5, "rtol": 1e-5}}


def test_merged_model_generates_what_base_plus_adapter_generates(family, tmp_path):
    cfg, _, processor, inputs = family
    spec = instantiate(OmegaConf.merge(cfg.model, {"torch_dtype": "float64"}), _convert_="all")
    model = attach_adapter(spec.load_model(), spec, _adapter(cfg), _plan(), quantized=False)
    _nudge(model)
    model.eval()
    tokenizer = processor.tokenizer
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.no_grad():
        unmerged = model.generate(**inputs, **kwargs)
        unmerged_logits = model(**inputs).logits
        merged = model.merge_and_unload()
        merged.save_pretrained(tmp_path / "merged")
        reloaded = type(merged).from_pretrained(tmp_path / "merged", dtype=torch.float64).eval()
        assert torch.equal(reloaded.generate(**inputs, **kwargs), unmerged)
        logits = reloaded(**inputs).logits
        assert logits.dtype == unmerged_logits.dtype == torch.float64
        torch.testing.assert_close(logits, unmerged_logits, **FLOAT32_NORMS.get(spec.name, MERGE_TOLERANCE))


def test_dora_adds_magnitudes_and_trains(family):
    cfg, spec, _, inputs = family
    model = attach_adapter(spec.load_model(), spec, _adapter(cfg, use_dora=True), _plan(), quantized=False)
    assert any("lora_magnitude_vector" in n for n, p in model.named_parameters() if p.requires_grad)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    causal_lm_loss(model(**inputs).logits, labels).backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_lora_on_a_frozen_tower_is_refused(family):
    cfg, spec, _, _ = family
    vision_regex = spec.lora_target_modules.get("vision")
    if not vision_regex:
        pytest.skip(f"{spec.name} has no vision LoRA targets")
    adapter = instantiate(cfg.peft.adapter, r=4, target_modules=vision_regex)
    with pytest.raises(ValueError, match=r"peft\.towers\.vision=frozen"):
        attach_adapter(spec.load_model(), spec, adapter, _plan(), quantized=False)


def test_full_fine_tune_trains_only_full_towers(family):
    _, spec, _, _ = family
    model = attach_adapter(
        spec.load_model(),
        spec,
        None,
        _plan(vision="frozen", projector="full", language="full"),
        quantized=False,
    )
    for name, param in model.named_parameters():
        assert param.requires_grad == (tower_of(name, spec.towers) != "vision"), name
