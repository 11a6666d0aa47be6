"""Evaluating a model on one split: a fine-tuned run (its base model + saved adapter) or a base model
zero-shot, optionally with in-context examples, through the decoder training-time validation uses and
the Trainer, datamodule loaders and prediction writer that train.py tests with."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mmlearn.backends import build_endpoint_module, usage_metrics, uses_endpoint
from mmlearn.building import build_datamodule
from mmlearn.data.datamodule import PREDICT
from mmlearn.evaluation.command_line import hydra_command_line, read_command_line
from mmlearn.evaluation.config import load_run_config, with_new_settings, with_predict_file
from mmlearn.evaluation.describe import describe
from mmlearn.evaluation.modules import build_base_module, build_run_module, check_label_set, shot_selector
from mmlearn.evaluation.passes import STAGES, evaluation_trainer, read_rows, run_pass, run_split, tune_on_val
from mmlearn.evaluation.rebase import evaluation_config
from mmlearn.io import write_atomic, write_json
from mmlearn.redaction import redact_secrets
from mmlearn.reports import write_reports

log = logging.getLogger(__name__)

__all__ = [
    "build_base_module",
    "build_run_module",
    "evaluate",
    "load_run_config",
    "run_split",
    "with_new_settings",
    "with_predict_file",
]


def evaluate(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict[str, float]:
    """`overrides`: the command line applied over a run's config (None: the running Hydra app's)."""
    if cfg.split not in STAGES:
        raise ValueError(f"split must be one of {sorted(STAGES)}, got {cfg.split!r}")
    out = Path(cfg.paths.output_dir)
    command = read_command_line(hydra_command_line() if overrides is None else overrides, cfg)
    config = evaluation_config(cfg, command)
    if cfg.split == PREDICT:
        config = with_predict_file(config, cfg.predict_file)
    if rank_zero_only.rank == 0:  # a DDP rank started later by Lightning finds it written
        resolved = redact_secrets(OmegaConf.to_container(config, resolve=True))
        write_atomic(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    L.seed_everything(config.seed, workers=True)
    datamodule = build_datamodule(config, read_splits=False)  # the Trainer's stage reads its split
    if cfg.run_dir and command.under("data"):
        check_label_set(Path(cfg.run_dir), datamodule.task)
    decoder = instantiate(config.decoding)
    if uses_endpoint(config):  # backend=openai: a decoder that talks HTTP, no weights loaded
        module = build_endpoint_module(config, datamodule.task, decoder)
    elif cfg.run_dir:
        module = build_run_module(Path(cfg.run_dir), config, datamodule.task, decoder)
    else:
        module = build_base_module(config, datamodule.task, decoder)
    shots = shot_selector(config, datamodule, module)
    datamodule.connect(module.processor, module.spec.prompt, shots=shots)
    trainer = evaluation_trainer(config, out)
    thresholds = tune_on_val(trainer, module, datamodule, cfg.split, out) if cfg.tune_thresholds else None
    metrics = run_pass(trainer, module, datamodule, cfg.split) | usage_metrics(module)
    if trainer.is_global_zero:
        write_outputs(out, config, datamodule, module, shots, metrics, thresholds)
    return metrics


def write_outputs(out: Path, config, datamodule, module, shots, metrics, thresholds) -> None:
    write_json(out / "metrics.json", metrics)
    rows = read_rows(out / "predictions" / f"{config.split}.jsonl")
    seconds = metrics[f"{config.split}/seconds"]
    info = describe(config, datamodule, module.decoder.name, shots, rows, seconds, thresholds)
    write_json(out / "evaluation.json", info)
    settings = instantiate(config.report)
    if settings.enabled and config.split != PREDICT:  # per_class, confusion.png, errors.html, reports.json
        write_reports(out, datamodule.task, rows, datamodule.splits[config.split], settings, config.split)
    log.info("evaluation written to %s", out)
