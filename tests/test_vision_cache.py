"""`model.vision_cache`: per-image features of the frozen vision side, checked on every tiny family.

With the cache on, logits, loss and LoRA gradients equal those with it off, on a first pass (all
misses) and on a second pass in another order with a new image (hits + one miss, where the vision
tower sees only the new image); changed pixels or settings miss; the cache is refused when what it
covers trains, has dropout, or under a sharded strategy, and for families it does not know."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from mmlearn.models.adapters import attach_adapter
from mmlearn.models.loss import causal_lm_loss
from mmlearn.models.towers import TOWERS, TowerPlan
from mmlearn.models.vision_cache import (
    FamilyAdapter,
    check_vision_cache,
    install_vision_cache,
    refuse_sharded_strategy,
)
from tests.conftest import compose

TINY = ["qwen2vl", "qwen2_5vl", "llava", "paligemma2", "smolvlm", "mllama", "idefics"]
ROOT = ["paths.root_dir=/tmp/mmlearn-vision-cache", "paths.output_dir=/tmp/mmlearn-vision-cache/out"]
# The models whose outputs are compared run in float64. A second pass reuses features encoded in
# another batch (another shape, so another reduction order and, across CPUs, other kernels): in
# float32 that moves logits by ~1e-5, as much as a tolerance could allow a wrong feature to move them.
# In float64 the same reordering moves them by ~1e-13 (eps 2.2e-16 times accumulation lengths of a few
# hundred at magnitudes of a few units), so TOLERANCE leaves a 500x margin over that while a stale or
# misplaced feature, which changes the output by ~1e-1, fails by eight orders of magnitude.
# Gemma 2 (PaliGemma 2's language model) computes its RMSNorm in float32 whatever the model's dtype
# (transformers' Gemma2RMSNorm: `x.float()`): features that differ by float64 noise can round to a
# neighbouring float32 there (6e-8 relative), so its comparisons allow float32 rounding (measured: 0 on
# AVX-512/AVX2/default kernels, 1/2 threads; the shared-prompt scores of the same model, 3e-8).
FLOAT64 = ["model.torch_dtype=float64"]
TOLERANCE = {"rtol": 1e-9, "atol": 1e-10}
FLOAT32_NORMS = {"paligemma2": {"rtol": 1e-5, "atol": 1e-8}}


def _plan(vision="frozen", projector="frozen", language="lora"):
    return TowerPlan(
        modes={"vision": vision, "projector": projector, "language": language}, lr=dict.fromkeys(TOWERS)
    )


def _image(seed: int, size=(56, 56)) -> Image.Image:
    """Noise, so that no two images (or SmolVLM tiles) share pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


IMAGES = [_image(0), _image(1, (70, 42)), _image(2, (42, 70))]


def _spec(family, *overrides):
    cfg = compose([f"model={family}_tiny", "model.vision_cache.enabled=true", *ROOT, *overrides])
    return cfg, instantiate(cfg.model, _convert_="all")


def _model(family, plan=None, **spec_overrides):
    cfg, spec = _spec(family, *FLOAT64)
    if spec_overrides:
        spec = instantiate(OmegaConf.merge(cfg.model, spec_overrides), _convert_="all")
    adapter = instantiate(cfg.peft.adapter, r=4, lora_alpha=8, lora_dropout=0.0)
    model = attach_adapter(spec.load_model(), spec, adapter, plan or _plan(), quantized=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero: give the adapter an effect and lora_A a gradient
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return spec, model.train()


@pytest.fixture(scope="module")
def families(offline_env):
    """family -> (spec, processor, model with language LoRA); each built once for the module."""
    built = {}

    def get(family):
        if family not in built:
            spec, model = _model(family)
            built[family] = (spec, spec.load_processor(), model)
        return built[family]

    return get


def _batch(spec, processor, images):
    prompts = [f"Which colour is block {i}?" + " please" * i for i in range(len(images))]
    answers = ['["red"]', '["blue", "urgent"]', '["question"]'][: len(images)]
    return spec.prompt.encode(processor, prompts, [[im] for im in images], answers=answers)


def _step(model, batch):
    """Logits, loss and the LoRA gradients of one training step."""
    inputs = dict(batch)
    labels = inputs.pop("labels")
    model.zero_grad()
    logits = model(**inputs).logits
    loss = causal_lm_loss(logits, labels)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach(), loss.detach(), grads


class Probe:
    """Counts the rows (images, tiles or patches) entering the vision tower's patch embedding."""

    def __init__(self, model, spec):
        vision = spec.towers["vision"][0]
        base = model.get_base_model()
        name = next(
            n
            for n, _ in base.named_modules()
            if n.startswith(vision + ".") and n.endswith(("patch_embed", "patch_embedding"))
        )
        self.rows = 0
        self.handle = base.get_submodule(name).register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.rows += args[0].shape[0]

    def take(self) -> int:
        rows, self.rows = self.rows, 0
        return rows


def _assert_same(cached, uncached, exact: bool, family: str | None = None):
    tolerance = FLOAT32_NORMS.get(family, TOLERANCE)
    logits, loss, grads = cached
    ref_logits, ref_loss, ref_grads = uncached
    assert logits.dtype == ref_logits.dtype == torch.float64  # what TOLERANCE is derived for
    if exact:
        assert torch.equal(logits, ref_logits) and torch.equal(loss, ref_loss)
    torch.testing.assert_close(logits, ref_logits, **tolerance)
    torch.testing.assert_close(loss, ref_loss, **tolerance)
    assert grads.keys() == ref_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], **tolerance, msg=name)
    assert any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("family", TINY)
def test_cached_training_equals_uncached_and_encodes_only_misses(families, family):
    spec, processor, model = families(family)
    first = _batch(spec, processor, [IMAGES[0], IMAGES[1]])
    second = _batch(spec, processor, [IMAGES[1], IMAGES[2], IMAGES[0]])  # reordered, one new image
    new_only = _batch(spec, processor, [IMAGES[2]])
    probe = Probe(model, spec)
    try:
        ref_first = _step(model, first)
        rows_first = probe.take()
        ref_second = _step(model, second)
        probe.take()
        with torch.no_grad():
            model(**{k: v for k, v in new_only.items() if k != "labels"})
        rows_new = probe.take()

        cache = install_vision_cache(model, spec, _plan())
        try:
            _assert_same(_step(model, first), ref_first, exact=True)
            assert probe.take() == rows_first  # all misses, encoded together
            assert cache.stats.hits == 0 and cache.stats.computed == len(cache.store) > 0
            stored = len(cache.store)

            _assert_same(_step(model, second), ref_second, exact=False, family=family)
            assert probe.take() == rows_new  # only the new image reaches the vision tower
            assert cache.stats.hits == stored and len(cache.store) > stored

            _assert_same(_step(model, second), ref_second, exact=False, family=family)
            assert probe.take() == 0  # everything is a hit now
        finally:
            cache.remove()
    finally:
        probe.handle.remove()
    assert cache.family.attribute not in vars(cache.owner)  # removed: the model's own call again


@pytest.mark.parametrize("family", ["qwen2vl", "llava", "smolvlm", "mllama"])
def test_changed_pixels_miss(families, family):
    spec, processor, model = families(family)
    changed = IMAGES[0].copy()
    changed.paste((255, 255, 255), (0, 0, 24, 24))
    batch = _batch(spec, processor, [IMAGES[0], IMAGES[1]])
    edited = _batch(spec, processor, [changed, IMAGES[1]])
    reference = _step(model, edited)
    cache = install_vision_cache(model, spec, _plan())
    try:
        _step(model, batch)
        before = cache.stats.computed
        _assert_same(_step(model, edited), reference, exact=False, family=family)
        assert cache.stats.computed > before  # the edited image was encoded again
        assert not torch.equal(reference[0], _step(model, batch)[0])  # and it does change the output
    finally:
        cache.remove()


def test_a_different_feature_layer_misses(families):
    """LLaVA's vision_feature_layer is part of the key: the same pixels with another layer recompute."""
    spec, processor, model = families("llava")
    pixels = _batch(spec, processor, [IMAGES[0]])["pixel_values"]
    inner = model.get_base_model().model
    with torch.no_grad():
        expected = [
            inner.get_image_features(pixels, vision_feature_layer=k).pooler_output[0] for k in (-1, -2)
        ]
        cache = install_vision_cache(model, spec, _plan())
        try:
            got = [
                inner.get_image_features(pixels, vision_feature_layer=k).pooler_output[0] for k in (-1, -2)
            ]
            assert cache.stats.computed == 2 and cache.stats.hits == 0
            inner.get_image_features(pixels)  # the config's default layer (-2): a hit
            assert cache.stats.hits == 1
        finally:
            cache.remove()
    assert not torch.equal(expected[0], expected[1])
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)


def test_generation_uses_the_cache_and_generates_the_same(families):
    spec, processor, model = families("qwen2vl")
    prompts = spec.prompt.encode(processor, ["Which colour?", "Urgent?"], [[IMAGES[0]], [IMAGES[2]]])
    kwargs = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": processor.tokenizer.pad_token_id}
    model.eval()
    try:
        with torch.no_grad():
            expected = model.generate(**prompts, **kwargs)
            cache = install_vision_cache(model, spec, _plan())
            try:
                assert torch.equal(model.generate(**prompts, **kwargs), expected)
                assert torch.equal(model.generate(**prompts, **kwargs), expected)
                assert cache.stats.computed == 2 and cache.stats.hits == 2
            finally:
                cache.remove()
    finally:
        model.train()


def test_a_trainable_projector_behind_an_uncached_tower_gets_its_gradients(offline_env):
    """Mllama caches the vision tower only: its projector may train, and does, with the cache on."""
    plan = _plan(projector="full")
    spec, model = _model("mllama", plan)
    processor = spec.load_processor()
    batch = _batch(spec, processor, [IMAGES[0], IMAGES[1]])
    reference = _step(model, batch)
    assert any("multi_modal_projector" in n for n in reference[2])
    cache = install_vision_cache(model, spec, plan)
    _assert_same(_step(model, batch), reference, exact=True)
    _assert_same(_step(model, batch), reference, exact=True)
    assert cache.stats.hits == 2


def test_disk_store_serves_a_later_run_and_the_size_limit_holds(families, tmp_path):
    spec, processor, model = families("paligemma2")
    batch = _batch(spec, processor, [IMAGES[0], IMAGES[1]])
    reference = _step(model, batch)
    on_disk = instantiate(
        OmegaConf.merge(
            _spec("paligemma2", *FLOAT64)[0].model, {"vision_cache": {"directory": str(tmp_path)}}
        ),
        _convert_="all",
    )
    cache = install_vision_cache(model, on_disk, _plan())
    _step(model, batch)
    cache.remove()
    assert len(list(tmp_path.glob("*/*.safetensors"))) == 2 and cache.stats.computed == 2
    later = install_vision_cache(model, on_disk, _plan())  # a new run: a fresh store on the same directory
    try:
        _assert_same(_step(model, batch), reference, exact=True)
        assert later.stats.hits == 2 and later.stats.computed == 0
    finally:
        later.remove()

    capped = instantiate(
        OmegaConf.merge(_spec("paligemma2", *FLOAT64)[0].model, {"vision_cache": {"max_gb": 0}}),
        _convert_="all",
    )
    cache = install_vision_cache(model, capped, _plan())
    try:
        _assert_same(_step(model, batch), reference, exact=True)
        _assert_same(_step(model, batch), reference, exact=True)
        assert cache.stats.computed == 4 and cache.stats.not_stored == 4 and len(cache.store) == 0
    finally:
        cache.remove()


# --- refusals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "plan", "named"),
    [
        ("qwen2vl", _plan(vision="lora"), r"peft\.towers\.vision=lora"),
        ("llava", _plan(projector="full"), r"peft\.towers\.projector=full"),
        ("smolvlm", _plan(projector="lora"), r"peft\.towers\.projector=lora"),
        ("idefics", _plan(vision="full", projector="full"), r"peft\.towers\.vision=full"),
    ],
)
def test_refused_when_what_it_caches_trains(family, plan, named):
    _, spec = _spec(family)
    with pytest.raises(ValueError, match=named) as error:
        check_vision_cache(spec, plan)  # what install_vision_cache checks first, before any model loads
    assert "peft.towers.vision=frozen" in str(error.value)


def test_refused_when_a_covered_weight_requires_grad(families):
    spec, processor, model = families("llava")
    projector = model.get_base_model().model.multi_modal_projector
    weight = projector.linear_1.weight
    weight.requires_grad_(True)
    try:
        with pytest.raises(ValueError, match="require grad"):
            install_vision_cache(model, spec, _plan())
    finally:
        weight.requires_grad_(False)
    cache = install_vision_cache(model, spec, _plan())
    try:
        weight.requires_grad_(True)  # unfrozen after the check: refused at the next call
        with pytest.raises(RuntimeError, match="require grad"):
            _step(model, _batch(spec, processor, [IMAGES[0]]))
    finally:
        weight.requires_grad_(False)
        cache.remove()


def test_refused_when_the_cached_tower_has_dropout(families):
    spec, _, model = families("llava")
    attention = model.get_base_model().model.vision_tower.encoder.layers[0].self_attn
    attention.dropout = 0.1
    try:
        with pytest.raises(ValueError, match="dropout"):
            install_vision_cache(model, spec, _plan())
    finally:
        attention.dropout = 0.0


def test_refused_for_an_unknown_family_and_a_mismatched_model(families):
    _, _, model = families("qwen2vl")
    cfg, _ = _spec("qwen2vl")
    # a family is unknown to the cache when its config names no adapter
    no_adapter = {"family": "fuyu", "vision_cache": {"adapter": None}}
    unknown = instantiate(OmegaConf.merge(cfg.model, no_adapter), _convert_="all")
    with pytest.raises(ValueError, match="not supported for model family 'fuyu'"):
        install_vision_cache(model, unknown, _plan())
    llava = compose(["model=llava_tiny", *ROOT]).model.vision_cache.adapter
    as_llava = {"family": "llava", "vision_cache": {"adapter": llava}}
    as_llava = instantiate(OmegaConf.merge(cfg.model, as_llava), _convert_="all")
    with pytest.raises(ValueError, match="expects LlavaModel"):
        install_vision_cache(model, as_llava, _plan())
    # every tiny family's config names its adapter by _target_
    for family in TINY:
        adapter = _spec(family)[1].vision_cache["adapter"]
        assert isinstance(adapter, FamilyAdapter), (family, adapter)


def test_a_replaced_forward_is_never_dropped(families):
    """Mllama and IDEFICS cache by replacing the vision tower's forward: one already replaced (a second
    cache, an accelerate hook) is refused, and removing the cache restores the class's own."""
    spec, _, model = families("idefics")
    vision = model.get_base_model().model.vision_model
    cache = install_vision_cache(model, spec, _plan())
    try:
        assert vars(vision)["forward"] is cache
        with pytest.raises(RuntimeError, match="already replaced"):
            install_vision_cache(model, spec, _plan())
    finally:
        cache.remove()
    assert "forward" not in vars(vision)


def test_off_by_default_and_refused_at_build_time(offline_env):
    from mmlearn.building import build_module
    from mmlearn.tasks import MultiLabelTask

    task = MultiLabelTask(["red", "blue"], "Labels: {labels}.")
    for family in TINY:
        assert compose([f"model={family}", *ROOT]).model.vision_cache.enabled is False
    built = build_module(compose(["model.vision_cache.enabled=true", *ROOT]), task)
    assert built.vision_cache is not None
    assert "get_image_features" in vars(built.model.get_base_model().model)
    with pytest.raises(ValueError, match=r"peft\.towers\.vision=frozen.*got peft\.towers\.vision=lora"):
        build_module(compose(["model.vision_cache.enabled=true", "peft.towers.vision=lora", *ROOT]), task)
    unknown = ["model.vision_cache.enabled=true", "model.family=fuyu", "model.vision_cache.adapter=null"]
    with pytest.raises(ValueError, match="model family 'fuyu'"):
        build_module(compose([*unknown, *ROOT]), task)


def test_refused_under_sharded_strategies():
    refuse_sharded_strategy(type("DDPStrategy", (), {})())
    refuse_sharded_strategy(type("DeepSpeedStrategy", (), {"config": {"zero_optimization": {"stage": 2}}})())
    with pytest.raises(ValueError, match="FSDPStrategy"):
        refuse_sharded_strategy(type("FSDPStrategy", (), {})())
    with pytest.raises(ValueError, match="ZeRO-3"):
        refuse_sharded_strategy(
            type("DeepSpeedStrategy", (), {"config": {"zero_optimization": {"stage": 3}}})()
        )
