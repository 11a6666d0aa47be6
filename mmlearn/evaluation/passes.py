"""Passes over a split the way train.py validates and tests: a Trainer from conf/trainer, the
datamodule's own loaders and the callback that writes the predictions. Under DDP (`trainer=ddp`,
`trainer=ddp_sim`) each rank scores its own samples, every sample once, gathered on rank 0."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from mmlearn.callbacks import PredictionWriter
from mmlearn.data.datamodule import PREDICT
from mmlearn.decoding import tunes_thresholds, with_thresholds
from mmlearn.decoding.thresholds import thresholds_from_rows
from mmlearn.io import write_json

log = logging.getLogger(__name__)

STAGES = {"test": "test", "val": "validate", PREDICT: "predict"}


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


def evaluation_trainer(config: DictConfig, out: Path) -> L.Trainer:
    """The config's Trainer (its progress bar included); no logger: an evaluation writes metrics.json."""
    callbacks = [PredictionWriter(str(out / "predictions")), LoopTimer()]
    return instantiate(config.trainer, callbacks=callbacks, logger=False)


def _callback(trainer: L.Trainer, kind: type) -> Callback:
    return next(c for c in trainer.callbacks if isinstance(c, kind))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_pass(trainer: L.Trainer, module, datamodule, split: str) -> dict[str, float]:
    """One pass over `split`; predictions/<split>.jsonl is written by the callback training uses."""
    stage = getattr(trainer, STAGES[split])
    if split == PREDICT:
        stage(module, datamodule=datamodule, return_predictions=False)
        metrics = None
        if trainer.is_global_zero:
            rows = read_rows(_callback(trainer, PredictionWriter).output_dir / f"{PREDICT}.jsonl")
            metrics = {
                f"{PREDICT}/parse_failure_rate": sum(not r["parse_ok"] for r in rows) / max(len(rows), 1)
            }
        metrics = trainer.strategy.broadcast(metrics, src=0)
    else:
        stage(module, datamodule=datamodule)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{split}/")}
    seconds = _callback(trainer, LoopTimer).seconds
    metrics[f"{split}/seconds"] = seconds
    metrics[f"{split}/samples_per_second"] = len(datamodule.splits[split]) / seconds if seconds else 0.0
    return metrics


def run_split(
    module, datamodule, source: DictConfig, split: str, out: Path, shots=None
) -> tuple[dict, float]:
    """One pass with a Trainer of its own from `source.trainer` (benchmarks/eval_speed.py)."""
    if shots is not None:
        datamodule.connect(module.processor, module.spec.prompt, shots=shots)
    metrics = run_pass(evaluation_trainer(source, out), module, datamodule, split)
    return metrics, metrics[f"{split}/seconds"]


def tune_on_val(trainer: L.Trainer, module, datamodule, split: str, out: Path) -> dict[str, float]:
    """Per-label thresholds with the best val F1, fitted on rank 0 and sent to every rank; the val
    predictions they come from are kept in tuning/predictions/val.jsonl."""
    if not tunes_thresholds(module.decoder) or datamodule.task.kind != "multilabel":
        raise ValueError(
            f"tune_thresholds=true needs a decoder with per-label thresholds (decoding=score) on a "
            f"multi-label task; got decoding={module.decoder.name} on a {datamodule.task.kind} task"
        )
    if split == "val":
        log.warning("thresholds tuned on val and evaluated on val: the val metrics are optimistic")
    trainer.validate(module, datamodule=datamodule)
    thresholds = None
    if trainer.is_global_zero:
        rows_file = out / "tuning" / "predictions" / "val.jsonl"
        rows_file.parent.mkdir(parents=True, exist_ok=True)
        (_callback(trainer, PredictionWriter).output_dir / "val.jsonl").replace(rows_file)
        thresholds = thresholds_from_rows(
            read_rows(rows_file), datamodule.task.labels, module.decoder.threshold
        )
        write_json(out / "thresholds.json", thresholds)
    thresholds = trainer.strategy.broadcast(thresholds, src=0)
    module.decoder = with_thresholds(module.decoder, thresholds)  # a new decoder; the module reads it
    return thresholds
