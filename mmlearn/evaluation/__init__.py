"""Evaluating a model on one split: a fine-tuned run (its base model + saved adapter) or a base model
zero-shot, optionally with in-context examples, through the decoder training-time validation uses."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from mmlearn.building import build_datamodule, build_module
from mmlearn.callbacks import PredictionWriter
from mmlearn.data.collate import PromptCollator
from mmlearn.data.datamodule import SampleDataset
from mmlearn.decoding import ScoreDecoder
from mmlearn.decoding.thresholds import thresholds_from_rows
from mmlearn.fewshot import ShotSelector, check_few_shot
from mmlearn.io import write_atomic, write_json
from mmlearn.models.towers import TOWERS, TowerPlan
from mmlearn.module import VLMFineTuner
from mmlearn.reports import write_reports

log = logging.getLogger(__name__)

STAGES = {"test": "test", "val": "validate", "predict": "predict"}
PREDICT = "predict"  # an unlabelled file (data.predict_file): answers only, no metrics or reports


CONF = Path(__file__).resolve().parents[1] / "conf"


def load_run_config(run_dir: Path) -> DictConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run_dir must be a directory written by train.py")
    return with_new_model_keys(OmegaConf.load(path))


def with_new_model_keys(run_cfg: DictConfig) -> DictConfig:
    """A run trained before a model setting existed (e.g. `model.vision_cache`) gets that setting's
    default from conf/model/<model.name>.yaml; every value the run recorded stays as it was."""
    group_file = CONF / "model" / f"{run_cfg.model.name}.yaml"
    if not group_file.is_file():
        return run_cfg  # a model config from outside this repository: nothing to fill from
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"model={run_cfg.model.name}", f"paths.root_dir={run_cfg.paths.root_dir}"]
    if GlobalHydra.instance().is_initialized():  # inside evaluate.py's own Hydra app
        current = compose("evaluate", overrides=overrides)
    else:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            current = compose("evaluate", overrides=overrides)
    missing = {k: current.model[k] for k in current.model if k not in run_cfg.model}
    if not missing:
        return run_cfg
    log.warning("run config has no model.%s: using today's defaults %s", ", model.".join(missing), missing)
    return OmegaConf.merge(
        run_cfg, {"model": OmegaConf.to_container(OmegaConf.create(missing), resolve=True)}
    )


def build_run_module(run_dir: Path, run_cfg: DictConfig, task, decoder) -> VLMFineTuner:
    if (run_dir / "adapter").is_dir():
        return build_module(run_cfg, task, adapter_dir=run_dir / "adapter", decoder=decoder)
    if (run_dir / "model").is_dir():
        full = OmegaConf.merge(run_cfg, {"model": {"pretrained": str(run_dir / "model"), "build": None}})
        return build_module(full, task, decoder=decoder)
    raise FileNotFoundError(f"{run_dir} holds neither adapter/ nor model/: did its training finish?")


def build_base_module(cfg: DictConfig, task, decoder) -> VLMFineTuner:
    """The base checkpoint as released: no adapter, nothing trainable; loaded in 4 bit with peft=qlora
    (the base a QLoRA run trains on)."""
    return VLMFineTuner(
        spec=instantiate(cfg.model, _convert_="all"),
        task=task,
        adapter=None,
        quantization=instantiate(cfg.peft.quantization, _convert_="all"),
        towers=TowerPlan(modes=dict.fromkeys(TOWERS, "frozen"), lr=dict.fromkeys(TOWERS)),
        optimizer=None,
        scheduler=None,
        extra_new_tokens=cfg.extra_new_tokens,
        decoder=decoder,
    )


class LoopTimer(Callback):
    """Wall time of the evaluation loop alone (model loading and data reading excluded)."""

    seconds = 0.0

    def _start(self, *_):
        self._t0 = time.perf_counter()

    def _stop(self, trainer, *_):
        if not trainer.sanity_checking:
            self.seconds = time.perf_counter() - self._t0

    on_test_epoch_start = on_validation_epoch_start = on_predict_epoch_start = _start
    on_test_epoch_end = on_validation_epoch_end = on_predict_epoch_end = _stop


def shot_selector(cfg: DictConfig, datamodule, module) -> ShotSelector | None:
    if not cfg.shots and not cfg.shots_per_class:
        return None
    if "train" not in datamodule.splits:
        raise ValueError("few-shot evaluation draws its examples from the train split, which is missing")
    selector = ShotSelector(
        datamodule.splits["train"],
        datamodule.task.labels,
        shots=cfg.shots,
        shots_per_class=cfg.shots_per_class,
        seed=cfg.shot_seed,
        resample=cfg.resample,
    )
    check_few_shot(module.spec, module.spec.prompt, selector.count, int(datamodule.modality.image))
    return selector


def run_split(module, datamodule, source: DictConfig, split: str, out: Path, shots) -> tuple[dict, float]:
    """One pass over a split; predictions/<split>.jsonl is written by the same callback training uses."""
    timer = LoopTimer()
    trainer = L.Trainer(
        accelerator=source.trainer.accelerator,
        devices=1,
        precision=source.trainer.precision,
        logger=False,
        callbacks=[PredictionWriter(str(out / "predictions")), timer],
        default_root_dir=str(out),
        enable_progress_bar=False,
    )
    loader = DataLoader(
        SampleDataset(datamodule.splits[split]),
        batch_size=datamodule.eval_batch_size,
        num_workers=datamodule.num_workers,
        collate_fn=PromptCollator(module.processor, module.spec.prompt, datamodule.task, shots=shots),
    )
    if split == PREDICT:
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        rows = read_rows(out / "predictions" / f"{PREDICT}.jsonl")
        metrics = {f"{PREDICT}/parse_failure_rate": sum(not r["parse_ok"] for r in rows) / max(len(rows), 1)}
    else:
        getattr(trainer, STAGES[split])(module, dataloaders=loader)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}/")}
    n = len(datamodule.splits[split])
    metrics[f"{split}/seconds"] = timer.seconds
    metrics[f"{split}/samples_per_second"] = n / timer.seconds if timer.seconds else 0.0
    return metrics, timer.seconds


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tune_on_val(cfg, module, datamodule, source, out: Path, shots) -> dict[str, float]:
    if not isinstance(module.decoder, ScoreDecoder) or datamodule.task.kind != "multilabel":
        raise ValueError("tune_thresholds=true needs decoding=score on a multi-label task")
    if cfg.split == "val":
        log.warning("thresholds tuned on val and evaluated on val: the val metrics are optimistic")
    run_split(module, datamodule, source, "val", out / "tuning", shots)
    rows = read_rows(out / "tuning" / "predictions" / "val.jsonl")
    thresholds = thresholds_from_rows(rows, datamodule.task.labels, module.decoder.threshold)
    module.decoder = module.decoder.with_thresholds(thresholds)
    write_json(out / "thresholds.json", thresholds)
    return thresholds


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if cfg.split not in STAGES:
        raise ValueError(f"split must be one of {sorted(STAGES)}, got {cfg.split!r}")
    out = Path(cfg.paths.output_dir)
    write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    run_dir = Path(cfg.run_dir) if cfg.run_dir else None
    source = load_run_config(run_dir) if run_dir else cfg  # model, data, trainer and seed
    if cfg.split == PREDICT:
        source = with_predict_file(source, cfg.predict_file)
    L.seed_everything(source.seed, workers=True)
    datamodule = build_datamodule(source)
    decoder = instantiate(cfg.decoding)
    if run_dir:
        module = build_run_module(run_dir, source, datamodule.task, decoder)
    else:
        module = build_base_module(source, datamodule.task, decoder)
    datamodule.connect(module.processor, module.spec.prompt)
    shots = shot_selector(cfg, datamodule, module)
    thresholds = tune_on_val(cfg, module, datamodule, source, out, shots) if cfg.tune_thresholds else None
    metrics, seconds = run_split(module, datamodule, source, cfg.split, out, shots)
    write_json(out / "metrics.json", metrics)
    rows = read_rows(out / "predictions" / f"{cfg.split}.jsonl")
    write_json(
        out / "evaluation.json",
        describe(cfg, source, datamodule, module.decoder.name, shots, rows, seconds, thresholds),
    )
    settings = instantiate(cfg.report)
    if (
        settings.enabled and cfg.split != PREDICT
    ):  # per_class.csv/.json, confusion.png, errors.html, reports.json
        write_reports(out, datamodule.task, rows, datamodule.splits[cfg.split], settings, cfg.split)
    log.info("evaluation written to %s", out)
    return metrics


def with_predict_file(source: DictConfig, predict_file: str | None) -> DictConfig:
    """The evaluated data config reading `predict_file` (relative to data.root) as the predict split."""
    if "predict_file" not in source.data:
        raise ValueError(
            f"split=predict: data={source.data.name} reads no unlabelled file (no data.predict_file)"
        )
    predict_file = predict_file or source.data.predict_file
    if predict_file is None:
        raise ValueError(
            f"split=predict needs predict_file=<an unlabelled file of data={source.data.name}, under data.root>"
        )
    return OmegaConf.merge(source, {"data": {"predict_file": predict_file}})


def describe(cfg, source, datamodule, decoder_name, shots, rows, seconds, thresholds) -> dict:
    """What was evaluated and how: what a comparison report needs to line modes up."""
    task = datamodule.task
    mode = "fine-tuned" if cfg.run_dir else "zero-shot"
    if shots is not None:
        mode = f"{mode}, {shots.count}-shot" if cfg.run_dir else f"{shots.count}-shot"
    return {
        "mode": mode,
        "run_dir": cfg.run_dir,
        "model": source.model.name,
        "data": source.data.name,
        "split": cfg.split,
        "decoding": decoder_name,
        "task_kind": task.kind,
        "labels": list(getattr(task, "labels", [])),
        "headline": task.headline,
        "shots": {
            "shots": cfg.shots,
            "shots_per_class": cfg.shots_per_class,
            "shot_seed": cfg.shot_seed,
            "resample": cfg.resample,
            "ids": None if shots is None or shots.fixed is None else [s.id for s in shots.fixed],
        },
        "prompt_ids": sorted({row.get("prompt_id") for row in rows} - {None}),
        "samples": len(rows),
        "seconds": seconds,
        "thresholds": thresholds,
    }
