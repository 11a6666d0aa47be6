"""On a CUDA device (skipped without one): one QLoRA (NF4) + bf16 training step through Lightning;
packed candidate scoring equals full-sequence scoring with sdpa's bool mask and eager's additive mask,
in float32 and in bf16; the vision cache gives the logits of the uncached model. The CPU suite checks
the same invariants in float64 (test_shared_prompt_scoring.py, test_vision_cache.py); these catch what
only CUDA kernels and bf16 can break (a bf16 additive mask, device placement, 4-bit kernels)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from mmlearn.decoding.prefix_plan import plan_prefixes
from mmlearn.decoding.score import score_candidates
from mmlearn.decoding.shared_prompt import score_with_shared_prompt
from mmlearn.models.vision_cache import install_vision_cache
from tests.conftest import compose
from tests.test_shared_prompt_scoring import ANSWERS, PROMPTS, _answer_ids, _images, _with_lora
from tests.test_vision_cache import IMAGES, _batch, _plan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
ROOT = ["paths.root_dir=/tmp/mmlearn-gpu-tests", "paths.output_dir=/tmp/mmlearn-gpu-tests/out"]
# Packed and full scoring run different shapes, so other reduction orders. float32 (TF32 off, the
# default for matmuls): ~1e-7 relative per operation, ~1e-5 relative on a summed log-likelihood of ~60
# (measured on CPU: 1e-5), so 5e-3 absolute leaves a >100x margin. bf16 (2^-9 relative rounding of
# every stored activation): the two shapes round differently, measured 0.017 at scores of ~60 on CPU
# (fp32 accumulation, as on CUDA); 0.25 leaves a 15x margin. A packed mask that lets each candidate
# token see its earlier siblings moves the largest score difference to 1.2-3.4 (measured, float32 and
# bf16, sdpa and eager), above both tolerances. The checks also assert the candidates' ranking agrees
# wherever two full scores are further apart than twice the tolerance.
TOLERANCE = {"float32": {"atol": 5e-3, "rtol": 0}, "bfloat16": {"atol": 0.25, "rtol": 0}}


def qlora_step(root, demo_dir, trainer: str = "gpu"):
    """One step of the training path with peft=qlora (no warm-up: the step's learning rate is not 0):
    the built module, its Lightning trainer after fit, and the parameters before the step."""
    from mmlearn.building import build_datamodule, build_module

    cfg = compose(
        [
            f"paths.root_dir={root}", f"paths.output_dir={root}/out", f"data.root={demo_dir}",
            "data.prepare.splits={train: 16, val: 8, test: 8}", "data.batch_size=4", "peft=qlora",
            f"trainer={trainer}", "trainer.max_steps=1", "scheduler.num_warmup_steps=0", "~logger",
            "~callbacks",
        ]
    )  # fmt: skip
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.task)
    datamodule.connect(module.processor, module.spec.prompt)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    fitted = instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, limit_val_batches=0, enable_progress_bar=False
    )
    fitted.fit(module, datamodule=datamodule)
    return module, fitted, before


def test_qlora_bf16_training_step(tmp_path, demo_dir):
    """On the GPU the language model's linear layers are 4-bit, the step runs under bf16 autocast, the
    loss is finite and the LoRA weights (only they) change."""
    module, trainer, before = qlora_step(tmp_path, demo_dir)
    quantized = [m for m in module.model.modules() if type(m).__name__ == "Linear4bit"]
    assert quantized and all(m.weight.device.type == "cuda" for m in quantized)
    assert trainer.precision == "bf16-mixed"
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    params = dict(module.model.named_parameters())
    changed = {n for n, p in params.items() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert changed and changed <= trainable and all("lora_" in n for n in trainable)
    assert all(torch.isfinite(params[n]).all() for n in trainable)


def packed_and_full(attn: str, dtype: str, device: str = "cuda"):
    """Scores of ANSWERS for PROMPTS on the tiny Qwen2-VL with a random LoRA: full sequences one by one
    (score_candidates) and packed on the shared prompt cache, the whole batch in one pass."""
    cfg = compose(
        ["model=qwen2vl_tiny", *ROOT, f"model.torch_dtype={dtype}", f"model.attn_implementation={attn}"]
    )
    spec = instantiate(cfg.model, _convert_="all")
    processor = spec.load_processor()
    model = _with_lora(cfg, spec).to(device)
    images = _images()
    batch = {"prompts": PROMPTS, "images": images}
    with torch.no_grad():
        full = score_candidates(
            model, processor, spec.prompt, batch, ANSWERS, normalize="sum", rows_per_batch=64, device=device
        )
        plan = plan_prefixes(_answer_ids(spec, processor, images, ANSWERS), "full")
        packed = score_with_shared_prompt(
            model, spec.prompt.encode(processor, PROMPTS, images), plan,
            tokens_per_pass=10**6, segment_tokens=None, device=device,
        )  # fmt: skip
    return full, packed


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_packed_scoring_equals_full_sequence_scoring_on_cuda(attn, dtype):
    full, packed = packed_and_full(attn, dtype)
    assert full.shape == packed.shape == (len(PROMPTS), len(ANSWERS))
    assert torch.isfinite(full).all() and torch.isfinite(packed).all()  # a bf16 additive mask can overflow
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(packed.float(), full.float(), **tolerance)
    gap = tolerance["atol"] + tolerance["rtol"] * full.abs().max()
    apart = (full[:, :, None] - full[:, None, :]).abs() > 2 * gap
    same_order = (full[:, :, None] > full[:, None, :]) == (packed[:, :, None] > packed[:, None, :])
    assert same_order[apart].all()


def cached_and_uncached_logits(dtype: str, device: str = "cuda"):
    """The tiny Qwen2-VL with a random language LoRA: logits of two batches without the cache, then with
    it (the first batch all misses, the second reordered with one new image: hits and a miss)."""
    from tests.test_vision_cache import _model

    spec, model = _model("qwen2vl", torch_dtype=dtype)
    model = model.to(device).eval()
    processor = spec.load_processor()
    batches = [
        _batch(spec, processor, [IMAGES[0], IMAGES[1]]),
        _batch(spec, processor, [IMAGES[1], IMAGES[2], IMAGES[0]]),
    ]
    batches = [{k: v.to(device) for k, v in b.items() if k != "labels"} for b in batches]
    with torch.no_grad():
        reference = [model(**b).logits for b in batches]
        cache = install_vision_cache(model, spec, _plan())
        try:
            cached = [model(**b).logits for b in batches]
            stats = (cache.stats.hits, cache.stats.computed)
        finally:
            cache.remove()
    return reference, cached, stats


def test_vision_cache_gives_equal_logits_on_cuda():
    """float32 on the GPU: the features come back from CPU memory to the device unchanged, so the
    misses' logits equal the uncached ones and the hits' differ only by the other batch shape in which
    their features were encoded (float32 reordering, as TOLERANCE above)."""
    reference, cached, (hits, computed) = cached_and_uncached_logits("float32")
    assert cached[0].device.type == "cuda" and hits == 2 and computed == 3
    for ref, got in zip(reference, cached, strict=True):
        torch.testing.assert_close(got, ref, atol=5e-4, rtol=1e-4)
    assert not torch.allclose(reference[1][0], reference[1][1])  # the images do change the output
