"""The memory estimate equals hand computation: on the tiny Qwen2-VL, and on Qwen2-VL-2B's published
config (built on the meta device: no download, no memory)."""

import re

import pytest
import torch
from torch import nn
from transformers import AutoModelForImageTextToText, Qwen2VLConfig, Qwen2VLForConditionalGeneration

from mmlearn.memory import ParameterCounts, count_parameters, estimate, is_4bit, nf4_bytes_per_param
from tests.conftest import compose


def planned_4bit(skip_modules: list[str]):
    """Which layers `load_in_4bit` will quantise: every nn.Linear outside `llm_int8_skip_modules` (the
    expectation a loaded 4-bit model is checked against)."""

    def rule(name: str, module: nn.Module) -> bool:
        return isinstance(module, nn.Linear) and not any(
            skip == name or name.startswith(f"{skip}.") for skip in skip_modules
        )

    return rule


def lora_parameters(model: nn.Module, target: str, rank: int) -> int:
    """Parameters LoRA of `rank` adds to the linear layers whose full name matches `target`."""
    pattern = re.compile(target)
    return sum(
        rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and pattern.fullmatch(name)
    )


SKIP = ["model.visual", "lm_head"]
LANGUAGE_LORA = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"

# Qwen/Qwen2-VL-2B-Instruct config.json (published values, copied by hand; never downloaded in tests)
QWEN2VL_2B = {
    "text_config": {
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "hidden_size": 1536,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "tie_word_embeddings": True,
}


def test_nf4_bytes_per_param():
    assert nf4_bytes_per_param(double_quant=False) == 0.5 + 4 / 64
    assert nf4_bytes_per_param(double_quant=True) == 0.5 + 1 / 64 + 4 / (64 * 256)


def test_estimate_is_the_documented_formula():
    counts = ParameterCounts(quantized=1000, frozen=300, trainable=50)
    got = estimate(
        counts, dtype_bytes=2, double_quant=False, layers=3, hidden=8, vocab=11, tokens=5, batch=2,
        activation_bytes=2,
    )  # fmt: skip
    assert got.weights == 1000 * 0.5625 + 300 * 2
    assert got.trainable == 50 * 16
    assert got.activations == 3 * 8 * 5 * 2 * 2 * 17 + 2 * 5 * 11 * (2 + 8)
    assert got.total == got.weights + got.trainable + got.activations
    checkpointed = estimate(
        counts, dtype_bytes=2, double_quant=False, layers=3, hidden=8, vocab=11, tokens=5, batch=2,
        activation_bytes=2, gradient_checkpointing=True,
    )  # fmt: skip
    assert checkpointed.activations == 3 * 8 * 5 * 2 * 2 * 1 + 2 * 5 * 11 * (2 + 8)


@pytest.fixture(scope="module")
def tiny(tiny_qwen2vl):
    return AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl, dtype=torch.float32).requires_grad_(
        False
    )


def test_tiny_model_plan_equals_hand_count(tiny):
    # hidden 64, 2 layers, 4 heads of 16, 2 KV heads (k/v out 32), MLP 128
    per_layer = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128
    counts = count_parameters(tiny, planned_4bit(SKIP))
    assert counts.quantized == 2 * per_layer == 73728
    assert counts.trainable == 0
    assert counts.quantized + counts.frozen == sum(p.numel() for p in tiny.parameters())
    lora_per_layer = 16 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 3)
    assert lora_parameters(tiny, LANGUAGE_LORA, rank=16) == 2 * lora_per_layer == 32768


@pytest.mark.slow
def test_loaded_qlora_model_matches_the_plan(tiny, tiny_qwen2vl, offline_env):
    from mmlearn.building import build_module
    from mmlearn.tasks import MultiLabelTask

    cfg = compose(
        [
            "peft=qlora",
            "paths.root_dir=/tmp/x",
            "paths.output_dir=/tmp/o",
            f"model.pretrained={tiny_qwen2vl}",
            "model.torch_dtype=float32",
        ]
    )
    module = build_module(cfg, MultiLabelTask(["a", "b"], "{labels}"))
    loaded = count_parameters(module.model, is_4bit)
    planned = count_parameters(tiny, planned_4bit(SKIP))
    assert loaded.quantized == planned.quantized
    assert loaded.trainable == lora_parameters(tiny, LANGUAGE_LORA, rank=cfg.peft.adapter.r)
    assert loaded.frozen == planned.frozen
    assert cfg.peft.quantization.bnb_4bit_use_double_quant


@pytest.fixture(scope="module")
def qwen2vl_2b():
    with torch.device("meta"):
        return Qwen2VLForConditionalGeneration(Qwen2VLConfig(**QWEN2VL_2B)).requires_grad_(False)


def test_qwen2vl_2b_counts_from_its_config(qwen2vl_2b):
    h, inter, layers, vocab, kv = 1536, 8960, 28, 151936, 2 * 128
    attention = (h * h + h) + 2 * (h * kv + kv) + h * h
    language = vocab * h + layers * (attention + 3 * h * inter + 2 * h) + h  # lm_head tied to the embedding
    e, mlp = 1280, 1280 * 4
    block = (e * 3 * e + 3 * e) + (e * e + e) + (e * mlp + mlp) + (mlp * e + e) + 2 * 2 * e
    merger = 2 * e + (4 * e * 4 * e + 4 * e) + (4 * e * h + h)
    vision = 32 * block + 3 * 2 * 14 * 14 * e + merger
    counts = count_parameters(qwen2vl_2b, planned_4bit(SKIP))
    assert counts.quantized + counts.frozen == language + vision == 2_208_985_600  # the published 2.2B
    assert counts.quantized == layers * (2 * h * h + 2 * h * kv + 3 * h * inter)
    lora = lora_parameters(qwen2vl_2b, LANGUAGE_LORA, rank=16)
    assert lora == layers * 16 * (6 * h + 2 * kv + 3 * (h + inter)) == 18_464_768


def test_qwen2vl_2b_qlora_fits_a_16gb_laptop_gpu_at_the_seed_settings(qwen2vl_2b):
    """Seed 001 trained this on a 16 GB GPU with batch 8; the estimate must say it fits, and say that
    the same batch in bf16 LoRA with 2048-token samples does not."""
    counts = count_parameters(qwen2vl_2b, planned_4bit(SKIP))
    lora = lora_parameters(qwen2vl_2b, LANGUAGE_LORA, rank=16)
    qlora = ParameterCounts(counts.quantized, counts.frozen, lora)
    shape = {"layers": 28, "hidden": 1536, "vocab": 151936, "batch": 8, "activation_bytes": 2}
    fits = estimate(qlora, dtype_bytes=2, double_quant=True, tokens=512, **shape)
    assert 2.3e9 < fits.weights < 2.6e9  # 1.31B x ~0.52 B + 0.90B x 2 B
    assert fits.total < 16e9
    full_bf16 = ParameterCounts(0, counts.quantized + counts.frozen, lora)
    too_big = estimate(full_bf16, dtype_bytes=2, double_quant=False, tokens=2048, **shape)
    assert too_big.total > 16e9
