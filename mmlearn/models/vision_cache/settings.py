"""`model.vision_cache` as configured, and the checks that need no model."""

from __future__ import annotations

from dataclasses import dataclass

from mmlearn.models.towers import TowerPlan
from mmlearn.models.vision_cache.families import FAMILIES

KEYS = ("enabled", "directory", "max_gb")


@dataclass(frozen=True)
class VisionCacheSettings:
    """`model.vision_cache` as read from the config (its defaults live in conf/model/<family>.yaml)."""

    enabled: bool
    directory: str | None  # None: CPU memory; a path: one safetensors file per image there
    max_gb: float | None  # stored features at most; beyond it new images are computed, never stored

    @classmethod
    def from_config(cls, node: dict) -> VisionCacheSettings:
        if set(node) != set(KEYS):
            raise ValueError(f"model.vision_cache must set exactly {list(KEYS)}, got {sorted(node)}")
        if node["max_gb"] is not None and node["max_gb"] < 0:
            raise ValueError(f"model.vision_cache.max_gb must be >= 0 or null, got {node['max_gb']}")
        return cls(**node)

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_gb is None else int(self.max_gb * 2**30)


def check_vision_cache(spec, plan: TowerPlan) -> VisionCacheSettings:
    """The checks that need no model (run before loading it): the settings, a supported family, and
    every tower the cached call covers set to `frozen`."""
    settings = VisionCacheSettings.from_config(spec.vision_cache)
    if not settings.enabled:
        return settings
    family = FAMILIES.get(spec.family)
    if family is None:
        raise ValueError(
            f"model.vision_cache.enabled=true is not supported for model family {spec.family!r} "
            f"(supported: {sorted(FAMILIES)}); set model.vision_cache.enabled=false"
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
