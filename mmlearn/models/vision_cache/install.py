"""Installing the cache on a model after checking it is valid, and refusing sharded strategies."""

from __future__ import annotations

import logging

from mmlearn.models.towers import TowerPlan, tower_of
from mmlearn.models.vision_cache.cache import VisionFeatureCache, _dropout, _fingerprint
from mmlearn.models.vision_cache.settings import check_vision_cache
from mmlearn.models.vision_cache.stores import DiskStore, MemoryStore

log = logging.getLogger(__name__)


def install_vision_cache(model, spec, plan: TowerPlan) -> VisionFeatureCache | None:
    """Put the cache on `model` (a PEFT model or a bare one) when `spec.vision_cache.enabled`, after
    checking that it is valid: an adapter named by the model config, the covered towers frozen (in the plan and in fact),
    no dropout in them."""
    settings = check_vision_cache(spec, plan)
    if not settings.enabled:
        return None
    family = settings.adapter
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    owner = family.owner(base)
    if type(owner).__name__ not in family.classes:
        raise ValueError(
            f"model.vision_cache for family {spec.family!r} expects {' or '.join(family.classes)}, "
            f"but {spec.pretrained} loaded {type(owner).__name__}"
        )
    covered = {n: p for n, p in base.named_parameters() if tower_of(n, spec.towers) in family.covers}
    trainable = [n for n, p in covered.items() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"model.vision_cache: {len(trainable)} parameters of the cached {family.what} require grad "
            f"(e.g. {trainable[:3]}), although peft.towers sets "
            + ", ".join(f"{t}={plan.modes[t]}" for t in family.covers)
        )
    named_modules = dict(base.named_modules())
    modules = [named_modules[p] for t in family.covers for p in spec.towers[t] if p in named_modules]
    dropout = _dropout(modules)
    if dropout:
        raise ValueError(
            f"model.vision_cache: the cached {family.what} has dropout ({', '.join(dropout[:4])}), so its "
            "output in training is random and cannot be cached; set model.vision_cache.enabled=false"
        )
    buffers = [n for n, _ in base.named_buffers() if tower_of(n, spec.towers) in family.covers]
    store = (
        DiskStore(settings.directory, settings.max_bytes)
        if settings.directory
        else MemoryStore(settings.max_bytes)
    )
    fingerprint = _fingerprint(spec.family, base, modules, [*covered, *buffers])
    cache = VisionFeatureCache(
        spec.family, family, owner, store, fingerprint, list(covered.values()), base.config
    )
    log.info("model.vision_cache: caching %s per image, %s", family.what, cache.where)
    return cache.install()


def refuse_sharded_strategy(strategy) -> None:
    """Sharded parameters (FSDP, DeepSpeed ZeRO-3) are gathered by every rank in every forward of the
    vision tower: a rank that skips it on a cache hit would leave the others waiting."""
    name = type(strategy).__name__
    stage = (getattr(strategy, "config", None) or {}).get("zero_optimization", {}).get("stage")
    if "FSDP" in name or ("DeepSpeed" in name and stage == 3):
        raise ValueError(
            f"model.vision_cache cannot run under {name}{f' (ZeRO-{stage})' if stage else ''}: ranks would "
            "skip the sharded vision tower on different steps; use DDP or ZeRO-2, or disable the cache"
        )
