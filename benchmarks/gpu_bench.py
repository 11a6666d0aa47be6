"""Qwen2-VL-2B at its real size on a CUDA device: training and evaluation throughput, MFU and memory.

    python -m benchmarks.gpu_bench --out gpu.json        # from the checkout, like benchmarks.eval_speed

The model is random-weight at the released size (`mmlearn.models.tiny.real.build_real_size` on the real
config.json and processor files in ../shared/real_processors/qwen2vl: same layers, widths and vision
tower, so the same FLOPs and memory as the checkpoint; `--model-dir` takes a real checkpoint instead).
Training runs at seed 001's settings (experiment mmhs150k/qwen2vl_qlora: LoRA r 4, alpha 32, dropout
0.05 on the language model, lr 2e-4; batch 8 in one step instead of its 4 x 2 accumulation) on demo-like
rows whose 640 px images fill Qwen2-VL's image budget (`model.processor_kwargs.max_pixels`: 512 tokens),
with LoRA in bf16 and QLoRA (NF4), each against a plain `transformers.Trainer` loop on the same model,
collator and batch (`speedup_vs_trainer_gpu`) and, with the `bench` extra, TRL's `SFTTrainer`
(benchmarks/train_throughput.py runs every side, each in its own process).

Figures per side: samples/s, tokens/s, MFU (model FLOPs counted from the batches' real token and patch
counts, see `batch_flops`, over the dense bf16 peak of the device named in `PEAK_BF16_FLOPS`), peak
memory allocated, and for mmlearn its memory estimate against the measured peak. Evaluation: samples/s
of generate, constrained and score (benchmarks/eval_speed.py's `best_of_runs`) against the seeds'
per-sample `generate` loop (64 new tokens; random weights rarely emit an end token, so both run to
their budgets). The vision cache: training samples/s with every image a hit over the same epoch with
it off (train_throughput's `run_epochs`).

Without CUDA it says so and runs the same code as a CPU smoke run on the config shrunk to `SMOKE_SHRINK`
(real vocabulary, token ids and processor files kept), a few steps, in one process, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks import eval_speed
from benchmarks import train_throughput as throughput

REPO = Path(__file__).resolve().parents[1]

SHARED = REPO.parent / "shared" / "real_processors"
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets; the first name contained in the
# device's name is used, so the PCIe variants come before their SXM namesakes.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
    "A10G": 70e12,
}  # fmt: skip
SEED_OVERRIDES = (
    "model=qwen2vl",
    "peft.adapter.r=4",
    "peft.adapter.lora_alpha=32",
    "peft.adapter.lora_dropout=0.05",
    "optimizer.lr=2.0e-4",
)
SEED_MAX_NEW_TOKENS = eval_speed.SEED_MAX_NEW_TOKENS
SMOKE_SHRINK = {"hidden_size": 64, "num_layers": 2, "num_heads": 2}
GPU_RUN = {
    "steps": 20, "warmup": 5, "batch_size": 8, "n_train": 192, "image_size": 640, "eval_samples": 32,
    "eval_batch_size": 16, "repeats": 2, "cache_n_train": 32, "cache_rounds": 2,
}  # fmt: skip
SMOKE_RUN = {
    "steps": 2, "warmup": 1, "batch_size": 2, "n_train": 6, "image_size": 56, "eval_samples": 4,
    "eval_batch_size": 4, "repeats": 1, "cache_n_train": 4, "cache_rounds": 1,
}  # fmt: skip


# --- model FLOPs -----------------------------------------------------------------------------------
def flop_counts(model_dir: Path) -> dict:
    """Matmul weights per row of each part (on the meta device: nothing allocated): the vision blocks
    and patch embedding run once per patch, the merger once per 2x2 patches, the language model and
    the output head once per token; plus the widths the attention scores need."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    parts = {"patch": 0, "merged": 0, "token": 0}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv3d)):
            continue
        part = "token" if ".visual." not in f".{name}." else "merged" if ".merger." in name else "patch"
        parts[part] += module.weight.numel()
    text, vision = config.get_text_config(), config.vision_config
    return {
        **parts,
        "text_layers": text.num_hidden_layers,
        "text_attention_width": text.num_attention_heads * (text.hidden_size // text.num_attention_heads),
        "vision_layers": vision.depth,
        "vision_width": vision.embed_dim,
        "merge": vision.spatial_merge_size**2,
    }


def batch_flops(counts: dict, shape: dict) -> float:
    """Model FLOPs of one LoRA training step on a batch (`train_throughput.batch_shape`): 2 per weight
    per row for each matmul; attention scores and their weighted sum 4·s²·width per layer (causal: half)
    over each sequence's real tokens, full attention within each image's patches. The language side
    counts twice (forward, and the backward's input gradients: its weights are frozen); the frozen
    vision side forward only. LoRA's own matmuls (<1% at r 4) and recomputation are not counted."""
    patches = [t * h * w for t, h, w in shape["grids"]]
    vision = 2 * counts["patch"] * sum(patches) + 2 * counts["merged"] * sum(patches) / counts["merge"]
    vision += sum(4 * p * p * counts["vision_width"] * counts["vision_layers"] for p in patches)
    tokens = sum(shape["lengths"])
    attention = sum(2 * s * s * counts["text_attention_width"] for s in shape["lengths"])
    language = 2 * counts["token"] * tokens + attention * counts["text_layers"]
    return vision + 2 * language


def with_mfu(result: dict, counts: dict, peak: float | None) -> dict:
    flops = sum(batch_flops(counts, shape) for shape in result["shapes"]) / result["seconds"]
    out = {k: v for k, v in result.items() if k != "shapes"}
    return dict(out, model_flops_per_s=flops, mfu=flops / peak if peak else None)


# --- the runs --------------------------------------------------------------------------------------
def training_figures(settings: dict, peft: str, counts: dict, peak, isolate: bool) -> dict:
    run = throughput._in_subprocess if isolate else (lambda side, s: throughput.SIDES[side](s))
    sides = ("mmlearn", "trainer", "trl") if peft == "lora" else ("mmlearn", "trainer")
    side_settings = dict(settings, overrides=[*settings["overrides"], f"peft={peft}"])
    results = {side: run(side, side_settings) for side in sides}
    out = {s: r if "skipped" in r else with_mfu(r, counts, peak) for s, r in results.items()}
    mm = out["mmlearn"]
    out["speedup_vs_trainer_gpu"] = mm["samples_per_s"] / out["trainer"]["samples_per_s"]
    if "trl" in out:
        out["speedup_vs_trl_gpu"] = mm["samples_per_s"] / out["trl"]["samples_per_s"] if "skipped" not in out["trl"] else None  # fmt: skip
    if "peak_memory_bytes" in mm:
        out["memory_measured_over_estimate"] = mm["peak_memory_bytes"] / mm["memory_estimate_bytes"]
    return out


def cache_figures(settings: dict, isolate: bool) -> dict:
    run = throughput._in_subprocess if isolate else (lambda side, s: throughput.SIDES[side](s))
    cache = run("epochs", dict(settings, overrides=[*settings["overrides"], "peft=lora"]))
    return dict(cache, vision_cache_speedup=cache["samples_per_s_on"] / cache["samples_per_s_off"])


def eval_figures(settings: dict, run: dict) -> dict:
    import torch

    from mmlearn.building import build_datamodule
    from mmlearn.evaluation import build_base_module

    data = Path(settings["data_dir"])
    extra = (f"data.test_file={data / 'test.csv'}", f"data.eval_batch_size={run['eval_batch_size']}")
    cfg = throughput.compose_config(settings, group_by_length=False, extra=extra)
    datamodule = build_datamodule(cfg)
    decoders = eval_speed.build_decoders()
    decoders.pop("score_full")
    module = build_base_module(cfg, datamodule.task, decoders["generate"]).eval()
    datamodule.connect(module.processor, module.spec.prompt)
    out_dir = Path(settings["workdir"]) / "eval"
    batched = eval_speed.best_of_runs(module, datamodule, cfg, decoders, run["repeats"], out_dir)
    if torch.cuda.is_available():
        module.to("cuda")
    with torch.no_grad():
        loop = eval_speed.per_sample_generation(module, datamodule.splits["test"], SEED_MAX_NEW_TOKENS)
    base = loop["samples_per_second"]
    return {
        "batched": batched,
        "per_sample": loop,
        "speedup_vs_per_sample": {name: row["samples_per_second"] / base for name, row in batched.items()},
    }


# --- driver ----------------------------------------------------------------------------------------
def prepare(workdir: Path, run: dict, *, cuda: bool, source: Path, model_dir: str | None) -> dict:
    from mmlearn.models.tiny.real import build_real_size

    if model_dir is None and not (source / "config.json").is_file():
        raise SystemExit(
            f"gpu_bench: no {source / 'config.json'} (the real processor files); pass --model-dir"
        )
    model = Path(model_dir) if model_dir else workdir / f"{source.name}_{'real_size' if cuda else 'smoke'}"
    if not (model / "config.json").is_file():
        build_real_size(
            source, model, seed=0, dtype="bfloat16" if cuda else "float32",
            device="cuda" if cuda else "cpu", shrink=None if cuda else SMOKE_SHRINK,
        )  # fmt: skip
    _, data = throughput.build_inputs(
        workdir, run["n_train"], n_test=run["eval_samples"], image_size=run["image_size"], model_dir=model
    )
    overrides = [*SEED_OVERRIDES, f"model.pretrained={model}"]
    overrides += [] if cuda else ["model.torch_dtype=float32"]
    return {
        "workdir": str(workdir), "model_dir": str(model), "data_dir": str(data), "steps": run["steps"],
        "warmup": run["warmup"], "batch_size": run["batch_size"], "num_workers": 0 if not cuda else 2,
        "n_train": run["n_train"], "cache_n_train": run["cache_n_train"], "cache_rounds": run["cache_rounds"],
        "trainer": "gpu" if cuda else "cpu", "overrides": overrides,
    }  # fmt: skip


def bench(workdir: Path, *, cuda: bool, source: Path, model_dir: str | None) -> dict:
    import torch

    run = GPU_RUN if cuda else SMOKE_RUN
    settings = prepare(workdir, run, cuda=cuda, source=source, model_dir=model_dir)
    device = torch.cuda.get_device_name() if cuda else throughput._device()
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device), None) if cuda else None
    counts = flop_counts(Path(settings["model_dir"]))
    result = {
        "cuda": cuda,
        "device": device,
        "peak_bf16_flops": peak,
        "model": {"dir": settings["model_dir"], "shrunk_to": None if cuda else SMOKE_SHRINK, **counts},
        "run": run,
        "lora": training_figures(settings, "lora", counts, peak, isolate=cuda),
        "qlora": training_figures(settings, "qlora", counts, peak, isolate=cuda),
        "vision_cache": cache_figures(settings, isolate=cuda),
        "eval": eval_figures(settings, run),
        "versions": throughput._versions(),
    }
    if not cuda:
        result["skipped"] = "GPU figures: a CPU smoke run of the same code on a shrunk model instead"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--real-files", type=Path, default=SHARED / "qwen2vl", help="the real config and processor files"
    )
    parser.add_argument("--model-dir", help="a checkpoint (or an earlier real-size build) to use instead")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--smoke", action="store_true", help="the CPU smoke run even where CUDA is present")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda:
        why = "--smoke" if args.smoke else "no CUDA device"
        print(f"gpu_bench: {why}; running a small CPU smoke run (its figures are not GPU figures)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mmlearn-gpu-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = bench(workdir, cuda=cuda, source=args.real_files, model_dir=args.model_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("device", "lora", "qlora")}, indent=2, default=str)[:4000])


if __name__ == "__main__":
    main()
