"""Training throughput of mmlearn against a plain `transformers.Trainer` loop (the seeds' way).

    python benchmarks/train_throughput.py --out throughput.json [--model-path /ckpt/Qwen2-VL-2B-Instruct]

Same tiny Qwen2-VL (built offline), same demo-like data (demo images, texts 1 to 12 sentences long),
same PEFT model, collator, batch size, learning rate and worker count on both sides. Each side runs in
its own subprocess of this script, one after the other, so neither inherits the other's warmed caches,
threads or memory; inside a side the first `--warmup` steps are not timed. mmlearn trains with its
defaults (length-grouped batches); the Trainer side with the seeds' settings (random batches).

Figures: `speedup_vs_trainer` (mmlearn samples/s over Trainer samples/s), `padding_fraction_grouped`
and `_ungrouped` (share of computed token positions that are padding, from real collated batches),
`loader_headroom` (data-loader samples/s over mmlearn training samples/s), `vision_cache_speedup`
(training samples/s of an epoch after the first with `model.vision_cache` on, where every image is a
hit, over the same epoch with it off; medians over `--cache-rounds` interleaved epoch pairs on the
first `--cache-n-train` samples), and on a GPU with
`--model-path`, tokens/s and MFU for Qwen2-VL-2B LoRA and QLoRA.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 125e12}


# --- inputs ----------------------------------------------------------------------------------------
def build_inputs(workdir: Path, n_train: int, seed: int = 0) -> tuple[Path, Path]:
    """The tiny Qwen2-VL checkpoint and a demo-like split whose texts vary from 1 to 12 sentences."""
    from mmlearn.data.demo import build_demo
    from mmlearn.models.tiny import build_preset

    model = workdir / "qwen2vl_tiny"
    if not (model / "config.json").is_file():
        build_preset("qwen2vl_tiny", model)
    demo = build_demo(workdir / "demo", splits={"train": n_train}, image_size=56, seed=seed)
    data = workdir / "varied"
    data.mkdir(exist_ok=True)
    rng = random.Random(seed)
    rows = list(csv.DictReader((demo / "train.csv").open()))
    with (data / "train.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "image_path", "labels"])
        writer.writeheader()
        for row in rows:
            text = " ".join([row["text"]] * rng.randint(1, 12))
            writer.writerow(dict(row, text=text, image_path=str(demo / row["image_path"])))
    (data / "labels.txt").write_text((demo / "labels.txt").read_text())
    return model, data


def compose_config(settings: dict, *, group_by_length: bool, extra: tuple[str, ...] = (), train_file=None):
    from hydra import compose, initialize_config_dir

    data = Path(settings["data_dir"])
    overrides = [
        f"model.pretrained={settings['model_dir']}",
        "data=csv",
        f"data.train_file={train_file or data / 'train.csv'}",
        "data.val_file=null",
        "data.test_file=null",
        f"data.image_root={data}",
        f"data.labels_file={data / 'labels.txt'}",
        f"data.batch_size={settings['batch_size']}",
        f"data.num_workers={settings['num_workers']}",
        f"data.group_by_length={str(group_by_length).lower()}",
        "trainer=cpu",
        f"trainer.max_steps={settings['steps']}",
        "~logger",
        "~callbacks",
        f"paths.root_dir={settings['workdir']}",
        f"paths.output_dir={settings['workdir']}/out",
        *settings.get("overrides", ()),
        *extra,
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("train", overrides=overrides)


def _build(cfg):
    from mmlearn.building import build_datamodule, build_module

    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.task)
    datamodule.connect(module.processor, module.spec.prompt)
    return datamodule, module


# --- the two sides ---------------------------------------------------------------------------------
def run_mmlearn(settings: dict) -> dict:
    import lightning as L
    from hydra.utils import instantiate

    L.seed_everything(0)
    cfg = compose_config(settings, group_by_length=True)
    datamodule, module = _build(cfg)
    clock = _LightningClock(settings["warmup"])
    trainer = instantiate(
        cfg.trainer, callbacks=[clock], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, default_root_dir=str(Path(settings["workdir"]) / "out"),
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return clock.result(datamodule.batch_size)


def run_epochs(settings: dict) -> dict:
    """mmlearn training on the first `cache_n_train` samples with `model.vision_cache.enabled=true`:
    epoch 0 fills the cache, then epochs alternate between the cache on (every image a hit, as in any
    epoch after the first) and off (the same model with the cache taken out: the vision tower runs), for
    `cache_rounds` rounds. Interleaving gives both sides the same warm-up, weights and machine load.
    Batches are reshuffled each epoch, so the hits are per image, not per batch."""
    import statistics

    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import Callback

    L.seed_everything(0)
    n, rounds = settings.get("cache_n_train", settings["n_train"]), settings.get("cache_rounds", 1)
    data = Path(settings["data_dir"])
    rows = list(csv.DictReader((data / "train.csv").open()))[:n]
    subset = data / f"train_first_{n}.csv"
    with subset.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    extra = (
        "model.vision_cache.enabled=true",
        "trainer.max_steps=-1",
        f"trainer.max_epochs={1 + 2 * rounds}",
    )
    cfg = compose_config(settings, group_by_length=True, extra=extra, train_file=subset)
    datamodule, module = _build(cfg)
    cache = module.vision_cache
    times: dict[int, list] = {}  # epoch -> [first batch start, last batch end, samples]

    class Clock(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch % 2 == 1 or trainer.current_epoch == 0:
                cache.install()
            else:
                cache.remove()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            times.setdefault(trainer.current_epoch, [time.perf_counter(), None, 0])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            epoch = times[trainer.current_epoch]
            epoch[1], epoch[2] = time.perf_counter(), epoch[2] + len(batch["ids"])

    trainer = instantiate(
        cfg.trainer, callbacks=[Clock()], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, default_root_dir=str(Path(settings["workdir"]) / "out"),
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    speed = {e: samples / (end - start) for e, (start, end, samples) in times.items() if e > 0}
    return {
        "samples_per_s_on": statistics.median(v for e, v in speed.items() if e % 2 == 1),
        "samples_per_s_off": statistics.median(v for e, v in speed.items() if e % 2 == 0),
        "samples_per_epoch": times[1][2],
        "rounds": rounds,
        "images_encoded": cache.stats.computed,  # over the cached epochs: epoch 0's images if all hit later
        "cache_hits": cache.stats.hits,
        "cache_mib": cache.store.bytes / 2**20,
    }


def run_trainer(settings: dict) -> dict:
    """The seeds' loop: `transformers.Trainer`, random batches, the model's own loss."""
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from mmlearn.data.collate import TrainCollator
    from mmlearn.data.datamodule import SampleDataset

    set_seed(0)
    cfg = compose_config(settings, group_by_length=False)
    datamodule, module = _build(cfg)
    collate = TrainCollator(module.processor, module.spec.prompt, datamodule.task)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(Path(settings["workdir"]) / "hf"), per_device_train_batch_size=datamodule.batch_size,
        max_steps=settings["steps"], learning_rate=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
        max_grad_norm=cfg.trainer.gradient_clip_val, lr_scheduler_type="cosine",
        dataloader_num_workers=datamodule.num_workers, remove_unused_columns=False, report_to="none",
        save_strategy="no", logging_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=module.model,
        args=args,
        train_dataset=SampleDataset(datamodule.splits["train"]),
        data_collator=lambda samples: collate(samples)["inputs"],
        callbacks=[Clock()],
    )
    trainer.train()
    start, end = times[2 * settings["warmup"]], times[-1]
    steps = len(times) // 2 - settings["warmup"]
    return {"samples_per_s": steps * datamodule.batch_size / (end - start), "timed_steps": steps}


class _LightningClock:
    """From the start of step `warmup` to the end of the last step (batch fetches included)."""

    def __new__(cls, warmup: int):
        from lightning.pytorch.callbacks import Callback

        class Clock(Callback):
            def __init__(self) -> None:
                self.start = self.end = None
                self.steps = self.tokens = 0

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx == warmup:
                    self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.end = time.perf_counter()
                self.steps = batch_idx + 1 - warmup
                if batch_idx >= warmup:
                    self.tokens += int(batch["inputs"]["attention_mask"].sum())

            def result(self, batch_size: int) -> dict:
                seconds = self.end - self.start
                return {
                    "samples_per_s": self.steps * batch_size / seconds,
                    "tokens_per_s": self.tokens / seconds,
                    "timed_steps": self.steps,
                }

        return Clock()


# --- data-side figures -----------------------------------------------------------------------------
def data_figures(settings: dict) -> dict:
    """Padding with and without grouping (real collated batches, one epoch) and loader samples/s."""
    from mmlearn.data.sampling import padding_fraction

    out = {}
    for grouped in (True, False):
        cfg = compose_config(settings, group_by_length=grouped)
        datamodule, _ = _build(cfg)
        out[f"padding_fraction_{'grouped' if grouped else 'ungrouped'}"] = padding_fraction(
            datamodule.train_dataloader()
        )
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up is not loader throughput
    start, n = time.perf_counter(), 0
    for batch in iterator:
        n += len(batch["ids"])
    out["loader_samples_per_s"] = n / (time.perf_counter() - start)
    return out


# --- GPU: Qwen2-VL-2B --------------------------------------------------------------------------------
def gpu_figures(settings: dict, model_path: str | None) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    if not model_path:
        return {"skipped": "no --model-path (a local Qwen2-VL-2B checkpoint)"}
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    out = {"device": name, "peak_bf16_flops": peak}
    for peft in ("lora", "qlora"):
        extra = ["model=qwen2vl", f"model.pretrained={model_path}", "trainer=gpu", f"peft={peft}"]
        result = _in_subprocess("mmlearn", dict(settings, overrides=extra))
        # LoRA on frozen weights: forward 2N + backward (input gradients only) 2N FLOPs per token
        flops = 4 * _parameters(model_path) * result["tokens_per_s"]
        out[peft] = dict(result, mfu=flops / peak if peak else None)
    return out


# --- driver ----------------------------------------------------------------------------------------
SIDES = {"mmlearn": run_mmlearn, "trainer": run_trainer, "epochs": run_epochs}


def _in_subprocess(side: str, settings: dict) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = handle.name
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--settings",
        json.dumps(settings),
        "--out",
        result_file,
    ]
    subprocess.run(command, check=True, cwd=REPO)
    return json.loads(Path(result_file).read_text())


def measure(settings: dict, *, isolate: bool = True, model_path: str | None = None) -> dict:
    run = _in_subprocess if isolate else (lambda side, s: SIDES[side](s))
    sides = {side: run(side, settings) for side in ("mmlearn", "trainer")}
    cache = run("epochs", settings)
    data = data_figures(settings)
    mm, hf = sides["mmlearn"]["samples_per_s"], sides["trainer"]["samples_per_s"]
    return {
        "speedup_vs_trainer": mm / hf,
        "padding_fraction_grouped": data["padding_fraction_grouped"],
        "padding_fraction_ungrouped": data["padding_fraction_ungrouped"],
        "loader_headroom": data["loader_samples_per_s"] / mm,
        "mmlearn_samples_per_s": mm,
        "trainer_samples_per_s": hf,
        "loader_samples_per_s": data["loader_samples_per_s"],
        "mmlearn_tokens_per_s": sides["mmlearn"]["tokens_per_s"],
        "vision_cache_speedup": cache["samples_per_s_on"] / cache["samples_per_s_off"],
        "vision_cache": cache,
        "gpu": gpu_figures(settings, model_path),
        "settings": {k: v for k, v in settings.items() if k != "workdir"},
        "device": _device(),
        "versions": _versions(),
        "sides_run": "one subprocess per side, sequentially" if isolate else "in-process",
    }


def _device() -> str:
    import torch

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({cpu})"


def _versions() -> dict:
    import lightning
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "peft": peft.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--cache-n-train", type=int, default=64, help="samples per epoch (vision cache)")
    parser.add_argument(
        "--cache-rounds", type=int, default=4, help="epoch pairs, cache on/off (vision cache)"
    )
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # one side, inside its own process
        settings = json.loads(args.settings)
        result = SIDES[args.side](settings)
        Path(args.out).write_text(json.dumps(result))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mmlearn-bench-"))
    model_dir, data_dir = build_inputs(workdir, args.n_train)
    settings = {
        "workdir": str(workdir), "model_dir": str(model_dir), "data_dir": str(data_dir), "steps": args.steps,
        "warmup": args.warmup, "batch_size": args.batch_size, "num_workers": args.num_workers,
        "n_train": args.n_train, "cache_n_train": min(args.cache_n_train, args.n_train),
        "cache_rounds": args.cache_rounds,
    }  # fmt: skip
    result = measure(settings, model_path=args.model_path)
    for key, value in result.items():
        print(f"{key}: {value}")
    Path(args.out).write_text(json.dumps(result, indent=2))


def _parameters(model_path: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForImageTextToText.from_config(config).parameters())


if __name__ == "__main__":
    main()
