"""A Predictor from a composed config: `run_dir=<training run>` (its config.yaml with the command line
on top, as `evaluate.py run_dir=...` builds it) or a base model zero-shot (`model=... data=...`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from mmlearn.building import build_datamodule
from mmlearn.evaluation.command_line import hydra_command_line, read_command_line
from mmlearn.evaluation.modules import build_base_module, build_run_module
from mmlearn.evaluation.rebase import evaluation_config
from mmlearn.inference.predictor import Predictor


def load_predictor(cfg: DictConfig, overrides: Sequence[str] | None = None) -> Predictor:
    """`overrides`: the command line applied over a run's config (None: the running Hydra app's)."""
    command = read_command_line(hydra_command_line() if overrides is None else overrides, cfg)
    config = evaluation_config(cfg, command)
    datamodule = build_datamodule(config, read_splits=False)
    decoder = instantiate(config.decoding)
    if cfg.run_dir:
        module = build_run_module(Path(cfg.run_dir), config, datamodule.task, decoder)
        name = str(config.get("run_name") or Path(cfg.run_dir).name)
    else:
        module = build_base_module(config, datamodule.task, decoder)
        name = f"{config.model.name}-{config.data.name}-zero-shot"
    module.eval()
    datamodule.connect(module.processor, module.spec.prompt)
    return Predictor(config, datamodule, module, name)
