"""Training throughput of mmlearn against a plain `transformers.Trainer` loop (the seeds' way) and
TRL's `SFTTrainer` (the peer a user would pick; the `bench` extra, skipped and named without it).

    python benchmarks/train_throughput.py --out throughput.json

Same tiny Qwen2-VL (built offline), same demo-like data (demo images, texts 1 to 12 sentences long),
same PEFT model, batch size, optimiser (AdamW, lr, weight decay, clipping), cosine schedule with its
warm-up and worker count on every side. Each side runs in its own subprocess of this script, one after
the other, so none inherits another's warmed caches, threads or memory; inside a side the first
`--warmup` steps are not timed. mmlearn trains with its defaults (length-grouped batches); the Trainer
side with the seeds' settings (random batches, mmlearn's collator); TRL with its own vision collator
on prompt-completion rows, the prompt masked.

Figures: `speedup_vs_trainer` and `speedup_vs_trl` (mmlearn samples/s over theirs; with `--rounds N`
the sides run in N interleaved rounds and each ratio is the median of the rounds' ratios; `_per_cpu_s`:
the same over each process's CPU seconds, which a loaded machine disturbs less),
`padding_fraction_grouped` and `_ungrouped` (share of computed token positions that are padding, from
real collated batches), `loader_headroom` (data-loader samples/s over mmlearn training samples/s),
`vision_cache_speedup` (training samples/s of an epoch after the first with `model.vision_cache` on,
where every image is a hit, over the same epoch with it off; medians over `--cache-rounds` interleaved
epoch pairs on the first `--cache-n-train` samples), and `test_scores`: every side's adapter scored on
`--n-test` held-out samples by `mmlearn.evaluation.run_split` (what evaluate.py runs), so a faster side
is also seen to have trained. GPU figures (real-size Qwen2-VL-2B, MFU, memory): benchmarks/gpu_bench.py.
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


# --- inputs ----------------------------------------------------------------------------------------
def build_inputs(
    workdir: Path, n_train: int, seed: int = 0, *, n_test: int = 0, image_size: int = 56, model_dir=None
) -> tuple[Path, Path]:
    """The tiny Qwen2-VL checkpoint (or `model_dir`, already built) and a demo-like split whose texts
    vary from 1 to 12 sentences; with `n_test`, a test split built the same way (to score adapters)."""
    from mmlearn.data.demo import build_demo
    from mmlearn.models.tiny import build_preset

    model = Path(model_dir) if model_dir else workdir / "qwen2vl_tiny"
    if not (model / "config.json").is_file():
        build_preset("qwen2vl_tiny", model)
    splits = {"train": n_train, **({"test": n_test} if n_test else {})}
    demo = build_demo(workdir / f"demo{image_size}", splits=splits, image_size=image_size, seed=seed)
    data = workdir / f"varied{image_size}"
    data.mkdir(exist_ok=True)
    rng = random.Random(seed)
    for split in splits:
        rows = list(csv.DictReader((demo / f"{split}.csv").open()))
        with (data / f"{split}.csv").open("w", newline="") as handle:
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
        f"trainer={settings.get('trainer', 'cpu')}",
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


# --- the sides ------------------------------------------------------------------------------------
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
    with PeakMemory() as peak:
        trainer.fit(module, datamodule=datamodule)
    _save_adapter(settings, "mmlearn", module.model)
    return dict(clock.result(datamodule.batch_size), **peak)


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
    from transformers import Trainer, TrainingArguments, set_seed

    from mmlearn.data.collate import TrainCollator
    from mmlearn.data.datamodule import SampleDataset

    set_seed(0)
    cfg = compose_config(settings, group_by_length=False)
    datamodule, module = _build(cfg)
    collate = TrainCollator(module.processor, module.spec.prompt, datamodule.task)
    clock = _StepClock(settings["warmup"], module.model)
    args = TrainingArguments(**_hf_arguments(settings, cfg, datamodule, "hf"))
    trainer = Trainer(
        model=module.model,
        args=args,
        train_dataset=SampleDataset(datamodule.splits["train"]),
        data_collator=lambda samples: collate(samples)["inputs"],
        callbacks=[clock],
    )
    with PeakMemory() as peak:
        trainer.train()
    _save_adapter(settings, "trainer", module.model)
    return dict(clock.result(datamodule.batch_size), **peak)


TRL_MISSING = "trl is not installed: pip install -e '.[bench]' (the bench extra)"


def run_trl(settings: dict) -> dict:
    """TRL's `SFTTrainer` on the same PEFT model, rows, optimiser, schedule and batch: prompt-completion
    rows in TRL's conversational format, batched by TRL's vision collator with the prompt masked
    (`completion_only_loss`); its bf16 and gradient-checkpointing defaults set to mmlearn's, and its
    `max_length` to `data.max_length` (mmlearn refuses longer samples, so none is cut)."""
    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError:
        return {"skipped": TRL_MISSING}
    from transformers import set_seed

    set_seed(0)
    cfg = compose_config(settings, group_by_length=False)
    datamodule, module = _build(cfg)
    clock = _StepClock(settings["warmup"], module.model)
    config = SFTConfig(
        **_hf_arguments(settings, cfg, datamodule, "trl"),
        max_length=cfg.data.max_length, gradient_checkpointing=bool(cfg.model.gradient_checkpointing),
        completion_only_loss=True, packing=False, dataset_kwargs={"skip_prepare_dataset": True},
    )  # fmt: skip
    trainer = SFTTrainer(
        model=module.model, args=config, train_dataset=trl_rows(datamodule), processing_class=module.processor
    )
    trainer.add_callback(clock)
    with PeakMemory() as peak:
        trainer.train()
    _save_adapter(settings, "trl", module.model)
    return dict(clock.result(datamodule.batch_size), **peak, trl_version=_version("trl"))


def trl_rows(datamodule):
    """The training split as TRL's conversational prompt-completion rows: the task's prompt after the
    image in one user turn, the task's answer as the assistant's reply (what mmlearn renders)."""
    from datasets import Dataset

    from mmlearn.data.images import load_rgb

    task = datamodule.task
    rows = []
    for sample in datamodule.splits["train"]:
        images = [load_rgb(sample.image_path)] if sample.image_path is not None else []
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": task.prompt(sample)}]
        rows.append(
            {
                "images": images,
                "prompt": [{"role": "user", "content": content}],
                "completion": [
                    {"role": "assistant", "content": [{"type": "text", "text": task.answer(sample)}]}
                ],
            }
        )
    return Dataset.from_list(rows)


def _hf_arguments(settings: dict, cfg, datamodule, name: str) -> dict:
    """`TrainingArguments` fields shared by the Trainer and TRL sides: mmlearn's optimiser (AdamW, lr,
    weight decay), clipping, cosine schedule with its warm-up, batch, workers and precision."""
    gpu = settings.get("trainer") == "gpu"
    return dict(
        output_dir=str(Path(settings["workdir"]) / name), per_device_train_batch_size=datamodule.batch_size,
        max_steps=settings["steps"], learning_rate=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay,
        optim="adamw_torch", max_grad_norm=cfg.trainer.gradient_clip_val, lr_scheduler_type="cosine",
        warmup_steps=cfg.scheduler.num_warmup_steps, dataloader_num_workers=datamodule.num_workers,
        remove_unused_columns=False, report_to="none", save_strategy="no", logging_strategy="no",
        use_cpu=not gpu, bf16=gpu and "bf16" in str(cfg.trainer.precision), seed=0, disable_tqdm=True,
    )  # fmt: skip


def run_score(settings: dict) -> dict:
    """Each saved adapter scored on the held-out test split by the code evaluate.py runs
    (`mmlearn.evaluation.run_split`, the configured decoder), loaded onto the same base model."""
    from mmlearn.building import build_datamodule, build_module
    from mmlearn.evaluation import run_split

    data = Path(settings["data_dir"])
    cfg = compose_config(settings, group_by_length=False, extra=(f"data.test_file={data / 'test.csv'}",))
    out = {}
    for side in settings["score"]:
        adapter = Path(settings["workdir"]) / "adapters" / side
        datamodule = build_datamodule(cfg)
        module = build_module(cfg, datamodule.task, adapter_dir=str(adapter)).eval()
        datamodule.connect(module.processor, module.spec.prompt)
        metrics, _ = run_split(module, datamodule, cfg, "test", Path(settings["workdir"]) / "score" / side)
        out[side] = {k: v for k, v in metrics.items() if k in SCORED}
    return out


SCORED = ("test/f1_macro", "test/f1_micro", "test/subset_accuracy", "test/parse_failure_rate")


def _save_adapter(settings: dict, side: str, model) -> None:
    if settings.get("save_adapters"):
        model.save_pretrained(Path(settings["workdir"]) / "adapters" / side)


class PeakMemory:
    """CUDA peak memory allocated inside the block ({} without CUDA)."""

    def __enter__(self) -> dict:
        import torch

        self.result: dict = {}
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        return self.result

    def __exit__(self, *exc) -> None:
        import torch

        if self.cuda and exc[0] is None:
            self.result["peak_memory_bytes"] = torch.cuda.max_memory_allocated()


def batch_shape(inputs: dict) -> dict:
    """What a batch's model FLOPs depend on: each sequence's real tokens, each image's patch grid."""
    grid = inputs.get("image_grid_thw")
    return {
        "lengths": inputs["attention_mask"].sum(dim=1).tolist(),
        "grids": grid.tolist() if grid is not None else [],
    }


def _now() -> tuple[float, float]:
    """Wall-clock and this process's CPU seconds (a loaded machine slows the first, not the second)."""
    return time.perf_counter(), time.process_time()


def _timed(start: tuple, end: tuple, steps: int, batch_size: int, shapes: list[dict]) -> dict:
    seconds, cpu_seconds = end[0] - start[0], end[1] - start[1]
    tokens = sum(sum(shape["lengths"]) for shape in shapes)
    return {
        "samples_per_s": steps * batch_size / seconds,
        "samples_per_cpu_s": steps * batch_size / cpu_seconds,
        "tokens_per_s": tokens / seconds,
        "timed_steps": steps,
        "seconds": seconds,
        "shapes": shapes,  # the timed batches (benchmarks/gpu_bench.py counts their FLOPs)
    }


class _StepClock:
    """A `TrainerCallback` timing from the start of step `warmup` to the end of the last step, and
    recording each training forward's batch shape (a hook on the model: the collator may run in
    loader workers)."""

    def __new__(cls, warmup: int, model):
        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[tuple[float, float]] = []
                self.shapes: list[dict] = []
                self.hook = model.register_forward_pre_hook(self.record, with_kwargs=True)

            def record(self, module, args, kwargs):
                if module.training:
                    self.shapes.append(batch_shape(kwargs))

            def on_step_begin(self, args, state, control, **kwargs):
                self.times.append(_now())

            def on_step_end(self, args, state, control, **kwargs):
                self.times.append(_now())

            def result(self, batch_size: int) -> dict:
                self.hook.remove()
                start, end = self.times[2 * warmup], self.times[-1]
                steps = len(self.times) // 2 - warmup
                return _timed(start, end, steps, batch_size, self.shapes[warmup : warmup + steps])

        return Clock()


class _LightningClock:
    """From the start of step `warmup` to the end of the last step (batch fetches included); the
    memory estimate mmlearn logs at the start of training, for the GPU benchmark's ratio."""

    def __new__(cls, warmup: int):
        from lightning.pytorch.callbacks import Callback

        from mmlearn.memory import estimate_run

        class Clock(Callback):
            def __init__(self) -> None:
                self.start = self.end = self.estimate = None
                self.steps = 0
                self.shapes: list[dict] = []

            def on_train_start(self, trainer, pl_module):
                self.estimate = estimate_run(pl_module, trainer.datamodule, trainer.precision).total

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx == warmup:
                    self.start = _now()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.end = _now()
                self.steps = batch_idx + 1 - warmup
                if batch_idx >= warmup:
                    self.shapes.append(batch_shape(batch["inputs"]))

            def result(self, batch_size: int) -> dict:
                timed = _timed(self.start, self.end, self.steps, batch_size, self.shapes)
                return dict(timed, memory_estimate_bytes=self.estimate)

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


# --- driver ----------------------------------------------------------------------------------------
SIDES = {
    "mmlearn": run_mmlearn, "trainer": run_trainer, "trl": run_trl, "epochs": run_epochs, "score": run_score,
}  # fmt: skip


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


TIMED = ("mmlearn", "trainer", "trl")


def interleaved(run, settings: dict) -> dict[str, list[dict]]:
    """`rounds` rounds of every timed side in turn, so a slow phase of a shared machine hits all of
    them; a skipped side (TRL not installed) is tried once."""
    runs: dict[str, list[dict]] = {side: [] for side in TIMED}
    for _ in range(settings.get("rounds", 1)):
        for side in TIMED:
            if not (runs[side] and "skipped" in runs[side][0]):
                runs[side].append(run(side, settings))
    return runs


def _median_ratio(runs: dict, other: str, key: str) -> float | None:
    """mmlearn's figure over the other side's, per round, the median over rounds."""
    import statistics

    pairs = zip(runs["mmlearn"], runs[other], strict=False)
    ratios = [mm[key] / theirs[key] for mm, theirs in pairs if "skipped" not in theirs]
    return statistics.median(ratios) if ratios else None


def _median(rows: list[dict], key: str) -> float | None:
    import statistics

    values = [row[key] for row in rows if "skipped" not in row]
    return statistics.median(values) if values else None


def measure(settings: dict, *, isolate: bool = True) -> dict:
    run = _in_subprocess if isolate else (lambda side, s: SIDES[side](s))
    settings = dict(settings, save_adapters=bool(settings.get("n_test")))
    runs = interleaved(run, settings)
    cache = run("epochs", settings)
    data = data_figures(settings)
    trained = [side for side in TIMED if "skipped" not in runs[side][-1]]
    scores = run("score", dict(settings, score=trained)) if settings["save_adapters"] else None
    mm = _median(runs["mmlearn"], "samples_per_s")
    return {
        "speedup_vs_trainer": _median_ratio(runs, "trainer", "samples_per_s"),
        "speedup_vs_trl": _median_ratio(runs, "trl", "samples_per_s"),
        "speedup_vs_trainer_per_cpu_s": _median_ratio(runs, "trainer", "samples_per_cpu_s"),
        "speedup_vs_trl_per_cpu_s": _median_ratio(runs, "trl", "samples_per_cpu_s"),
        "padding_fraction_grouped": data["padding_fraction_grouped"],
        "padding_fraction_ungrouped": data["padding_fraction_ungrouped"],
        "loader_headroom": data["loader_samples_per_s"] / mm,
        "mmlearn_samples_per_s": mm,
        "trainer_samples_per_s": _median(runs["trainer"], "samples_per_s"),
        "trl_samples_per_s": _median(runs["trl"], "samples_per_s"),
        "samples_per_s_runs": {side: [r.get("samples_per_s") for r in rows] for side, rows in runs.items()},
        "trl": {k: v for k, v in runs["trl"][-1].items() if k != "shapes"},
        "loader_samples_per_s": data["loader_samples_per_s"],
        "mmlearn_tokens_per_s": _median(runs["mmlearn"], "tokens_per_s"),
        "vision_cache_speedup": cache["samples_per_s_on"] / cache["samples_per_s_off"],
        "vision_cache": cache,
        "test_scores": scores,  # each side's adapter (the last round's), scored by mmlearn.evaluation.run_split
        "gpu": {"skipped": "the GPU figures come from benchmarks/gpu_bench.py"},
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
        "trl": _version("trl"),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


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
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds of the timed sides; ratios are medians"
    )
    parser.add_argument(
        "--n-test", type=int, default=64, help="test samples scoring each side's adapter (0: no scoring)"
    )
    parser.add_argument("--workdir", default=None)
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
    model_dir, data_dir = build_inputs(workdir, args.n_train, n_test=args.n_test)
    settings = {
        "workdir": str(workdir), "model_dir": str(model_dir), "data_dir": str(data_dir), "steps": args.steps,
        "warmup": args.warmup, "batch_size": args.batch_size, "num_workers": args.num_workers,
        "n_train": args.n_train, "cache_n_train": min(args.cache_n_train, args.n_train),
        "cache_rounds": args.cache_rounds, "n_test": args.n_test, "rounds": args.rounds,
    }  # fmt: skip
    result = measure(settings)
    for key, value in result.items():
        print(f"{key}: {value}")
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
