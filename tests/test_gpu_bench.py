"""The real-size builder and the GPU benchmark's CPU side: Qwen2-VL-2B's released config builds at its
released size, the FLOPs count matches the architecture's matmuls, `benchmarks/gpu_bench.py --smoke`
runs end to end and writes its JSON, and the throughput benchmark's TRL side says how to install TRL
when it is missing and, when present, is timed and scored beside the other sides."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.conftest import REPO, run_script

SHARED = Path(REPO).parent / "shared" / "real_processors"
QWEN2VL = SHARED / "qwen2vl"
needs_real_files = pytest.mark.skipif(
    not (QWEN2VL / "config.json").is_file(), reason=f"the real processor files are not here ({QWEN2VL})"
)


def _script(name: str):
    return importlib.import_module(f"benchmarks.{name}")


@needs_real_files
def test_real_size_config_is_the_released_qwen2vl_2b(tmp_path):
    from mmlearn.models.tiny.real import real_size_config

    config = real_size_config(QWEN2VL)
    assert getattr(config, "quantization_config", None) is None  # the export is AWQ; random weights are not
    text, vision = config.get_text_config(), config.vision_config
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size) == (28, 1536, 8960)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (12, 2, 151936)
    assert (vision.depth, vision.embed_dim, vision.num_heads, vision.spatial_merge_size) == (32, 1280, 16, 2)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert 2.20e9 < sum(p.numel() for p in model.parameters()) < 2.22e9  # Qwen2-VL-2B: 2.21B

    config.save_pretrained(tmp_path)
    counts = _script("gpu_bench").flop_counts(tmp_path)
    h, i, kv, v = 1536, 8960, 2 * 128, 151936
    layer = h * h + 2 * h * kv + h * h + 3 * h * i  # q, k, v, o; gate, up, down
    assert counts["token"] == 28 * layer + v * h  # and the (tied) output head
    block = 1280 * 3 * 1280 + 1280 * 1280 + 2 * 1280 * 4 * 1280  # qkv, proj, fc1, fc2
    assert counts["patch"] == 32 * block + 1280 * 3 * 2 * 14 * 14  # and the Conv3d patch embedding
    assert counts["merged"] == 5120 * 5120 + 5120 * 1536


def test_batch_flops_counts_each_part_once():
    flops = _script("gpu_bench").batch_flops
    counts = {"patch": 10, "merged": 40, "token": 100, "text_layers": 2, "text_attention_width": 8,
              "vision_layers": 3, "vision_width": 4, "merge": 4}  # fmt: skip
    text_only = flops(counts, {"lengths": [5, 3], "grids": []})
    assert text_only == 2 * (2 * 100 * 8 + 2 * 8 * (25 + 9) * 2)  # forward + input gradients
    with_image = flops(counts, {"lengths": [5, 3], "grids": [[1, 2, 4]]})  # 8 patches, 2 merged tokens
    assert with_image - text_only == 2 * 10 * 8 + 2 * 40 * 2 + 4 * 64 * 4 * 3  # forward only


@needs_real_files
def test_build_real_size_shrunk_loads_like_a_checkpoint(tmp_path):
    """The smoke build: the shrunk config through the same builder, loaded by `from_pretrained` with
    the real processor files (the released vocabulary, image token and generation config kept)."""
    from mmlearn.models.tiny.real import build_real_size

    path = build_real_size(
        QWEN2VL,
        tmp_path / "m",
        seed=0,
        dtype="float32",
        shrink={"hidden_size": 32, "num_layers": 1, "num_heads": 2},
    )
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert model.config.get_text_config().vocab_size == 151936 and model.config.image_token_id == 151655
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655
    released = json.loads((QWEN2VL / "generation_config.json").read_text())
    assert json.loads((path / "generation_config.json").read_text()) == released


@pytest.mark.slow
@needs_real_files
def test_gpu_bench_smoke_run_writes_its_figures(tmp_path):
    out = tmp_path / "gpu.json"
    args = ("benchmarks.gpu_bench", "--out", str(out), "--workdir", str(tmp_path / "w"), "--smoke")
    done = run_script("-m", *args, timeout=600)
    assert "CPU smoke run" in done.stdout
    result = json.loads(out.read_text())
    assert result["cuda"] is False and result["skipped"] and result["model"]["shrunk_to"]
    for peft in ("lora", "qlora"):
        for side in ("mmlearn", "trainer"):
            row = result[peft][side]
            assert all(
                math.isfinite(row[k]) and row[k] > 0
                for k in ("samples_per_s", "tokens_per_s", "model_flops_per_s")
            )
            assert row["mfu"] is None  # no peak is claimed for a CPU
        assert (
            result[peft]["speedup_vs_trainer_gpu"] > 0
            and result[peft]["mmlearn"]["memory_estimate_bytes"] > 0
        )
    trl = result["lora"]["trl"]
    assert "bench" in trl["skipped"] if "skipped" in trl else trl["samples_per_s"] > 0
    assert set(result["eval"]["batched"]) == {"generate", "constrained", "score"}
    assert all(v > 0 for v in result["eval"]["speedup_vs_per_sample"].values())
    cache = result["vision_cache"]
    assert cache["vision_cache_speedup"] > 0 and cache["cache_hits"] >= cache["samples_per_epoch"]


def test_trl_side_names_the_extra_when_trl_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError
    result = _script("train_throughput").run_trl({})
    assert result == {"skipped": "trl is not installed: pip install -e '.[bench]' (the bench extra)"}


def test_sides_run_in_interleaved_rounds_and_ratios_are_medians():
    bench = _script("train_throughput")
    speeds = {"mmlearn": iter([10, 12, 30]), "trainer": iter([5, 12, 10]), "trl": iter([])}
    order = []

    def run(side, settings):
        order.append(side)
        if side == "trl":
            return {"skipped": "no trl"}
        return {"samples_per_s": next(speeds[side])}

    runs = bench.interleaved(run, {"rounds": 3})
    assert order == ["mmlearn", "trainer", "trl", "mmlearn", "trainer", "mmlearn", "trainer"]
    assert bench._median_ratio(runs, "trainer", "samples_per_s") == 2.0  # of 2, 1, 3
    assert bench._median_ratio(runs, "trl", "samples_per_s") is None


@pytest.mark.slow
def test_trl_side_is_timed_and_every_adapter_scored(tmp_path, tiny_qwen2vl):
    pytest.importorskip("trl")
    bench = _script("train_throughput")
    (tmp_path / "qwen2vl_tiny").symlink_to(tiny_qwen2vl)
    model_dir, data_dir = bench.build_inputs(tmp_path, n_train=12, n_test=4)
    settings = {
        "workdir": str(tmp_path), "model_dir": str(model_dir), "data_dir": str(data_dir), "steps": 3,
        "warmup": 1, "batch_size": 4, "num_workers": 0, "n_train": 12, "n_test": 4, "cache_n_train": 4,
    }  # fmt: skip
    result = bench.measure(settings, isolate=False)
    assert math.isfinite(result["speedup_vs_trl"]) and result["speedup_vs_trl"] > 0
    assert result["speedup_vs_trl_per_cpu_s"] > 0 and result["speedup_vs_trainer_per_cpu_s"] > 0
    assert result["trl"]["timed_steps"] == 2 and result["versions"]["trl"]
    assert set(result["test_scores"]) == {"mmlearn", "trainer", "trl"}
    for scores in result["test_scores"].values():
        assert 0 <= scores["test/f1_macro"] <= 1 and 0 <= scores["test/parse_failure_rate"] <= 1
