"""An evaluation's command line read as what it sets: config groups chosen (`data=csv`), keys set
(`data.test_file=x`, `+trainer.limit_test_batches=2`) and keys deleted (`~trainer.plugins`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class CommandLine:
    groups: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    added: frozenset[str] = frozenset()  # keys set with + or ++: they may be new to the run's config
    deleted: frozenset[str] = frozenset()

    @property
    def changed(self) -> frozenset[str]:
        return self.groups | self.keys | self.deleted

    def under(self, node: str) -> list[str]:
        """What the command line sets in `node`, e.g. ['peft', 'peft.adapter.r']."""
        return sorted(k for k in self.changed if k == node or k.startswith(f"{node}."))


def hydra_command_line() -> list[str]:
    """The overrides of the running Hydra app (none outside one)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def read_command_line(overrides: Sequence[str], cfg: DictConfig) -> CommandLine:
    """A bare name that is a config node of `cfg` is a group choice; Hydra's own settings are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups, keys, added, deleted = set(), set(), set(), set()
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.split(".")[0].split("/")[0] == "hydra":
            continue
        if override.package is not None:
            raise ValueError(f"{override.input_line}: package overrides (@) are not supported by evaluate.py")
        if override.is_delete():
            deleted.add(key)
        elif "." not in key and isinstance(cfg.get(key), DictConfig):
            groups.add(key)
        else:
            keys.add(key)
            if override.is_add() or override.is_force_add():
                added.add(key)
    return CommandLine(frozenset(groups), frozenset(keys), frozenset(added), frozenset(deleted))
