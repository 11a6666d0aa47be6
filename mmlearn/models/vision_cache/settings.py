"""`model.vision_cache` as configured, and the checks that need no model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mmlearn.models.towers import TowerPlan
from mmlearn.models.vision_cache.families import FamilyAdapter

KEYS = ("enabled", "directory", "max_gb", "adapter")


@dataclass(frozen=True)
class VisionCacheSettings:
    """`model.vision_cache` as read from the config (its defaults live in conf/model/<family>.yaml)."""

    enabled: bool
    directory: str | None  # None: CPU memory; a path: one safetensors file per image there
    max_gb: float | None  # stored features at most; beyond it new images are computed, never stored
    adapter: FamilyAdapter | None  # how the family's image call is cut per image; None: no cache for it

    @classmethod
    def from_config(cls, node: dict) -> VisionCacheSettings:
        # `adapter` may be absent: a run recorded before the adapters were named in config
        if not set(KEYS[:3]) <= set(node) <= set(KEYS):
            raise ValueError(f"model.vision_cache must set exactly {list(KEYS)}, got {sorted(node)}")
        if node["max_gb"] is not None and node["max_gb"] < 0:
            raise ValueError(f"model.vision_cache.max_gb must be >= 0 or null, got {node['max_gb']}")
        return cls(**{**node, "adapter": _adapter(node.get("adapter"))})

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_gb is None else int(self.max_gb * 2**30)


def check_vision_cache(spec, plan: TowerPlan) -> VisionCacheSettings:
    """The checks that need no model (run before loading it): the settings, a family whose config names
    its adapter, and every tower the cached call covers set to `frozen`."""
    settings = VisionCacheSettings.from_config(spec.vision_cache)
    if not settings.enabled:
        return settings
    family = settings.adapter
    if family is None:
        raise ValueError(
            f"model.vision_cache.enabled=true is not supported for model family {spec.family!r}: its "
            "model config names no model.vision_cache.adapter (a `_target_` in "
            "mmlearn.models.vision_cache.families); set model.vision_cache.enabled=false"
        )
    training = {t: plan.modes[t] for t in family.covers if plan.modes[t] != "frozen"}
    if training:
        needs = " and ".join(f"peft.towers.{t}=frozen" for t in family.covers)
        got = ", ".join(f"peft.towers.{t}={m}" for t, m in training.items())
        raise ValueError(
            f"model.vision_cache caches the output of {family.what} for {spec.family}, which is only valid "
            f"when it does not train: it needs {needs}, got {got}. Freeze those towers or set "
            "model.vision_cache.enabled=false"
        )
    return settings


def _adapter(node) -> FamilyAdapter | None:
    """`model.vision_cache.adapter`: Hydra has instantiated it with the spec; a config node still holding
    its `_target_` (a spec built with `_recursive_=False`) is instantiated here."""
    if node is None or isinstance(node, FamilyAdapter):
        return node
    if isinstance(node, Mapping) and "_target_" in node:
        from hydra.utils import instantiate

        node = instantiate(node)
        if isinstance(node, FamilyAdapter):
            return node
    raise ValueError(
        "model.vision_cache.adapter must be null or name a FamilyAdapter by `_target_` "
        f"(mmlearn.models.vision_cache.families), got {node!r}"
    )
