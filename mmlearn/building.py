"""Turning a composed config into the objects a run needs; shared by training and evaluation."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from mmlearn.models.towers import TowerPlan
from mmlearn.module import VLMFineTuner


def build_datamodule(cfg: DictConfig, *, read_splits: bool = True):
    """Training reads every split up front (the data summary, the train tokens); evaluation passes
    `read_splits=False` and the Trainer's stage reads only the split it evaluates."""
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    if read_splits:
        datamodule.setup()
    return datamodule


def build_module(cfg: DictConfig, task, *, adapter_dir=None, spec=None, decoder=None) -> VLMFineTuner:
    from mmlearn.heads import build_head_module, head_kind  # heads build on VLMFineTuner
    from mmlearn.heads.building import GENERATE, refuse_generation

    spec = spec if spec is not None else instantiate(cfg.model, _convert_="all")
    if head_kind(cfg) != GENERATE:  # head=linear|nli: answers read from logits
        return build_head_module(cfg, task, adapter_dir=adapter_dir, spec=spec)
    refuse_generation(spec)
    return VLMFineTuner(
        spec=spec,
        task=task,
        adapter=None if adapter_dir else instantiate(cfg.peft.adapter, _convert_="all"),
        quantization=instantiate(cfg.peft.quantization, _convert_="all"),
        towers=TowerPlan(modes=dict(cfg.peft.towers), lr=dict(cfg.peft.tower_lr)),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        decoder=decoder if decoder is not None else instantiate(cfg.decoding),
        adapter_dir=adapter_dir,
    )


def build_callbacks(cfg: DictConfig) -> list:
    """Every configured callback; a factory may return None for "off" (callbacks.early_stopping)."""
    built = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]
    return [callback for callback in built if callback is not None]


def build_loggers(cfg: DictConfig) -> list:
    return [
        instantiate(node, _convert_="all") for node in (cfg.get("logger") or {}).values() if node is not None
    ]
