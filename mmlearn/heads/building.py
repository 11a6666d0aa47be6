"""Which LightningModule a config builds: `head=generate` (the default, and every run recorded before
heads) is VLMFineTuner, generating text; `head=linear` a HeadFineTuner; `head=nli` an NLIModule."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmlearn.heads.module import HeadFineTuner, NLIModule
from mmlearn.heads.text_encoders import is_text_encoder
from mmlearn.models.towers import TowerPlan

log = logging.getLogger(__name__)
GENERATE = "generate"


def head_kind(cfg: DictConfig) -> str:
    return OmegaConf.select(cfg, "head.name", default=GENERATE) or GENERATE


def refuse_generation(spec) -> None:
    """A text encoder has no text to generate: it needs a head."""
    if is_text_encoder(spec):
        raise ValueError(
            f"model={spec.name} is a text encoder: it answers through a head (head=linear, or head=nli "
            "for an NLI checkpoint), not by generating (head=generate)"
        )


def build_head_module(cfg: DictConfig, task, *, adapter_dir=None, spec=None, zero_shot: bool = False):
    """The module of `cfg.head`; `zero_shot`: a base model evaluated as released (only head=nli can)."""
    kind = head_kind(cfg)
    spec = spec if spec is not None else instantiate(cfg.model, _convert_="all")
    decoder = instantiate(cfg.head.decoder, _convert_="all")
    if OmegaConf.select(cfg, "decoding._target_", default="").rsplit(".", 1)[-1] != "GenerateDecoder":
        log.warning("head=%s reads its answers from logits: the decoding= setting is not used", kind)
    quantization = instantiate(cfg.peft.quantization, _convert_="all")
    if kind == "nli":
        return NLIModule(spec, task, decoder=decoder, quantization=quantization)
    if zero_shot:
        raise ValueError(
            f"head={kind} is trained: train it first (train.py head={kind} ...), then evaluate.py "
            "run_dir=<that run>; zero-shot classification without training is head=nli"
        )
    return HeadFineTuner(
        spec,
        task,
        settings=OmegaConf.to_container(cfg.head, resolve=True),
        adapter=None if adapter_dir else instantiate(cfg.peft.adapter, _convert_="all"),
        quantization=quantization,
        towers=TowerPlan(modes=dict(cfg.peft.towers), lr=dict(cfg.peft.tower_lr)),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        decoder=decoder,
        adapter_dir=adapter_dir,
    )
