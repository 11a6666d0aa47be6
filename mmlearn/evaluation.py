"""Re-evaluating a finished training run: its base model + saved adapter, on one split."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from mmlearn.building import build_datamodule, build_module
from mmlearn.callbacks import PredictionWriter
from mmlearn.io import write_atomic, write_json

log = logging.getLogger(__name__)

STAGES = {"test": "test", "val": "validate"}


def load_run_config(run_dir: Path) -> DictConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run_dir must be a directory written by train.py")
    return OmegaConf.load(path)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if cfg.split not in STAGES:
        raise ValueError(f"split must be one of {sorted(STAGES)}, got {cfg.split!r}")
    run_dir = Path(cfg.run_dir)
    out = Path(cfg.paths.output_dir)
    run_cfg = load_run_config(run_dir)
    write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(run_cfg.seed, workers=True)
    datamodule = build_datamodule(run_cfg)
    if (run_dir / "adapter").is_dir():
        module = build_module(run_cfg, datamodule.task, adapter_dir=run_dir / "adapter")
    elif (run_dir / "model").is_dir():
        full = OmegaConf.merge(run_cfg, {"model": {"pretrained": str(run_dir / "model"), "build": None}})
        module = build_module(full, datamodule.task)
    else:
        raise FileNotFoundError(f"{run_dir} holds neither adapter/ nor model/: did its training finish?")
    datamodule.connect(module.processor, module.spec.prompt)
    trainer = L.Trainer(
        accelerator=run_cfg.trainer.accelerator,
        devices=1,
        precision=run_cfg.trainer.precision,
        logger=False,
        callbacks=[PredictionWriter(str(out / "predictions"))],
        default_root_dir=str(out),
    )
    getattr(trainer, STAGES[cfg.split])(module, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{cfg.split}/")}
    write_json(out / "metrics.json", metrics)
    log.info("evaluation written to %s", out)
    return metrics
