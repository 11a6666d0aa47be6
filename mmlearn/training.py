"""One training run: fit with generation-based validation, test the best checkpoint, save the adapter."""

from __future__ import annotations

import logging
import traceback
from functools import partial
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mmlearn.artefacts import describe_run, save_described
from mmlearn.building import build_callbacks, build_datamodule, build_loggers, build_module
from mmlearn.checkpointing import save_directory_atomic
from mmlearn.io import write_atomic, write_json, write_jsonl
from mmlearn.memory import estimate_run
from mmlearn.redaction import redact_secrets
from mmlearn.resume import RunDirectoryInUse, check_run_dir, command_line_keys, resume_checkpoint_path
from mmlearn.tracking import finish_wandb_run

log = logging.getLogger(__name__)
__all__ = ["RunDirectoryInUse", "train"]


def prepare_run_dir(cfg: DictConfig, config: dict) -> Path:
    """Rank 0 checks the directory and writes config.yaml; DDP ranks started later by Lightning's
    launcher (same argv, same hydra.run.dir) find it already written."""
    out = Path(cfg.paths.output_dir)
    if rank_zero_only.rank == 0:
        added = check_run_dir(out, config, cfg.resume, command_line_keys())
        out.mkdir(parents=True, exist_ok=True)
        if not cfg.resume or added:  # a resumed run's record gains the settings it now runs with
            write_atomic(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
    return out


def write_data_report(out: Path, datamodule) -> None:
    write_json(out / "data_summary.json", datamodule.summary())
    skipped = datamodule.skipped()
    if skipped:
        write_jsonl(out / "skipped_samples.jsonl", skipped)
        log.warning(
            "%d samples skipped (data.on_bad_sample=skip); listed in %s",
            len(skipped),
            out / "skipped_samples.jsonl",
        )


def best_checkpoint(trainer: L.Trainer) -> str | None:
    callback = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if callback is None or not callback.best_model_path:
        log.warning("no best checkpoint (validation never ran); testing the final weights")
        return None
    return callback.best_model_path


def write_error(out: Path, error: BaseException) -> None:
    """`error.txt` marks a failed run for sweep summaries: first line `Type: message`, then the traceback."""
    first = f"{type(error).__name__}: {error}".splitlines()[0]
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    write_atomic(out / "error.txt", f"{first}\n\n{trace}")


def train(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    config = redact_secrets(OmegaConf.to_container(cfg, resolve=True))
    out = prepare_run_dir(cfg, config)
    exit_code = 1
    try:
        metrics = fit_and_test(cfg, out, config)
        exit_code = 0
        return metrics
    except Exception as error:
        write_error(out, error)
        raise
    finally:
        finish_wandb_run(exit_code)


def fit_and_test(cfg: DictConfig, out: Path, config: dict) -> dict[str, float]:
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule.task)
    datamodule.connect(module.processor, module.spec.prompt)  # counts tokens; may skip over-long samples
    write_data_report(out, datamodule)
    skipped_up_front = len(datamodule.skipped())
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg), logger=build_loggers(cfg) or False
    )
    log.info(estimate_run(module, datamodule, trainer.precision).describe())
    for logger in trainer.loggers:
        logger.log_hyperparams({"config": config, "data_summary": datamodule.summary()})
    ckpt_path = resume_checkpoint_path(trainer) if cfg.resume else None
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    best = best_checkpoint(trainer)
    best_score = trainer.checkpoint_callback.best_model_score if best else None
    trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)
    if len(datamodule.skipped()) != skipped_up_front:  # images that broke in a batch (on_bad_sample=skip)
        write_data_report(out, datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if best_score is not None:
        metrics[f"{cfg.optimized_metric}_best"] = float(best_score)
    if trainer.is_global_zero:
        described = describe_run(cfg, module, datamodule, metrics)
        save = partial(save_described, save=module.save_trained, description=described)
        save_directory_atomic(out / ("adapter" if module.is_peft else "model"), save)
        write_json(out / "metrics.json", metrics)
    log.info("run directory: %s", out)
    return metrics
