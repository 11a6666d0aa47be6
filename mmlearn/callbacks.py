"""Callbacks that write what a run produces next to its config."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch.distributed as dist
from lightning.pytorch.callbacks import Callback, EarlyStopping
from omegaconf import OmegaConf

from mmlearn.io import write_jsonl

log = logging.getLogger(__name__)


def early_stopping(*, patience: int | None, **settings) -> EarlyStopping | None:
    """Lightning's EarlyStopping on the monitored validation metric, or no callback when `patience` is
    null (the default): `callbacks.early_stopping.patience=10` turns it on."""
    if patience is None:
        return None
    if patience < 1:
        raise ValueError(f"callbacks.early_stopping.patience must be null (off) or >= 1, got {patience}")
    return EarlyStopping(patience=patience, **settings)


def gather_once(rows: list[dict], world_size: int) -> list[dict]:
    """Every rank's rows, each sample once, in dataset order. Under DDP rank r scored samples r, r+W,
    r+2W, ... (`evaluation_sampler`), so interleaving the ranks' lists restores the order of one process;
    a sample seen twice means a padding sampler, whose duplicates the metrics would have counted too."""
    if world_size <= 1 or not dist.is_initialized():
        return rows
    parts: list[list[dict]] = [[] for _ in range(world_size)]
    dist.all_gather_object(parts, rows)
    merged = [part[i] for i in range(max(map(len, parts))) for part in parts if i < len(part)]
    ids = [row["id"] for row in merged]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise RuntimeError(f"samples {repeated[:5]} were evaluated on more than one rank")
    return merged


class PredictionWriter(Callback):
    """Writes `<output_dir>/<stage>.jsonl`: id, raw output, parsed labels, gold labels, one line each,
    gathered from all ranks."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self._rows: list[dict] = []

    def _collect(self, outputs) -> None:
        self._rows.extend(outputs or [])

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "predict")

    def _write(self, trainer, stage: str) -> None:
        if trainer.sanity_checking:
            return
        rows = gather_once(self._rows, trainer.world_size)
        if trainer.is_global_zero:
            write_jsonl(self.output_dir / f"{stage}.jsonl", rows)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "test")


class ValidationLog(Callback):
    """One log line per validation epoch with its overall `val/` metrics (not per class): train.log (and
    a SLURM job's output) shows how the run progresses without a logger's files."""

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if re.fullmatch(r"val/[^/]+", k)}
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        log.info("epoch %d step %d: %s", trainer.current_epoch, trainer.global_step, shown)


class ConfigInCheckpoint(Callback):
    """Every `.ckpt` carries the run's config under `run_config`, as litgpt writes hyperparameters.yaml
    next to each checkpoint: a checkpoint copied out of its run still says how it was trained. The
    config is the run's config.yaml itself, so it is redacted exactly as that file is
    (`mmlearn.redaction`), and it holds plain values only, so `torch.load(weights_only=True)` reads it."""

    KEY = "run_config"

    def __init__(self, config_file: str) -> None:
        self.config_file = Path(config_file)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"callbacks.run_config.config_file={self.config_file} does not exist: a checkpoint's "
                "run_config is the run's config.yaml, which training writes before fitting"
            )
        checkpoint[self.KEY] = OmegaConf.to_container(OmegaConf.load(self.config_file))
