"""`evaluate.py run_dir=<run> ...`: the run's config.yaml is the base and the command line applies on
top of it. A group chosen on the command line (`data=csv`, `trainer=ddp_sim`, `decoding=score`) replaces
the run's with that option as composed; a key (`data.test_file=x`, `decoding.likelihood=full`) changes
the run's value, and the values the run derived from it follow (see links.py). What a trained adapter
fixes is refused by name: `peft.*`, `model.pretrained`, `model.family`, and `model.torch_dtype` unless
the command line sets it itself."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mmlearn.evaluation.command_line import CommandLine
from mmlearn.evaluation.config import load_run_config
from mmlearn.evaluation.links import derived_settings

log = logging.getLogger(__name__)

JOB_KEYS = ("task_name", "paths")  # this evaluation's own: where it writes, what it is
FIXED = ("peft", "model.pretrained", "model.family")  # what an adapter was trained with and on
DTYPE = "model.torch_dtype"


def evaluation_config(cfg: DictConfig, command: CommandLine) -> DictConfig:
    """What is evaluated: `cfg` itself for a base model, else the run's config with the command line
    on top."""
    if not cfg.run_dir:
        return cfg
    run = load_run_config(Path(cfg.run_dir))
    refuse_fixed(command, cfg.run_dir)
    merged = rebase(run, cfg, command)
    check_base_model(run, merged, command, cfg.run_dir)
    return merged


def refuse_fixed(command: CommandLine, run_dir: str) -> None:
    named = [k for node in FIXED for k in command.under(node)]
    if named:
        raise ValueError(
            f"{', '.join(named)} cannot change when evaluating the trained adapter of run_dir={run_dir}: "
            "it was trained with the run's settings (evaluate another run, or a base model without run_dir)"
        )


def _raw(cfg: DictConfig, key: str):
    node = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node


def _top(key: str) -> str:
    return key.split(".")[0]


def rebase(run: DictConfig, cfg: DictConfig, command: CommandLine) -> DictConfig:
    base = OmegaConf.create(OmegaConf.to_container(run))
    for key in cfg:  # evaluation settings the run has no use for (split, shots, ...), and JOB_KEYS
        if key not in run or key in JOB_KEYS:
            base[key] = _raw(cfg, key)
    for group in command.groups:
        base[group] = _raw(cfg, group)
    for key in sorted(command.keys):
        if _top(key) in run and _top(key) not in JOB_KEYS and _top(key) not in command.groups:
            _set(base, run, key, _raw(cfg, key), key in command.added)
    for key in command.deleted:
        _delete(base, key)
    for key, interpolation in derived_settings(run, command).items():
        OmegaConf.update(base, key, interpolation, merge=False)
    missing = sorted(OmegaConf.missing_keys(base))
    if missing:
        raise ValueError(
            f"{', '.join(missing)} must be set: {', '.join(sorted(command.groups))} on the command line "
            "replaces the run's settings with that option's (null for a split the evaluation does not read)"
        )
    merged = OmegaConf.create(OmegaConf.to_container(base, resolve=True))
    check_root_followed(run, merged, command)
    return merged


def _set(base: DictConfig, run: DictConfig, key: str, value, added: bool) -> None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(run, parent)
    if not added and not (isinstance(node, DictConfig) and leaf in node):
        raise ValueError(
            f"{key}: the run's {_top(key)} config ({OmegaConf.select(run, f'{_top(key)}.name')}) has no "
            f"{key}; choose the group on the command line too ({_top(key)}=<option> {key}=...)"
        )
    OmegaConf.update(base, key, value, merge=False, force_add=True)


def _delete(base: DictConfig, key: str) -> None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    if isinstance(node, DictConfig) and leaf in node:
        del node[leaf]


def check_root_followed(run: DictConfig, merged: DictConfig, command: CommandLine) -> None:
    """A setting the run placed under its data.root (e.g. an experiment's captions file), neither
    derived by a link nor set on the command line, would silently keep reading the old location."""
    if "data.root" not in command.keys or "data" in command.groups or run.data.get("root") is None:
        return
    old = str(run.data.root).rstrip("/")
    stale = [
        f"data.{k}"
        for k, v in run.data.items()
        if k != "root"
        and isinstance(v, str)
        and (v == old or v.startswith(f"{old}/"))
        and merged.data.get(k) == v
        and f"data.{k}" not in command.keys
    ]
    if stale:
        raise ValueError(
            f"data.root changes from {old}, but the run's {', '.join(stale)} lie under it and would not "
            f"follow: set them too, or choose the group (data={run.data.name} data.root=...)"
        )


def check_base_model(run: DictConfig, merged: DictConfig, command: CommandLine, run_dir: str) -> None:
    """The adapter loads onto the base model it was trained on, in its dtype unless asked for another."""
    causes = f"the command line ({', '.join(command.under('model') + command.under('paths'))})"
    for key in ("model.family", "model.pretrained"):
        before, after = OmegaConf.select(run, key), OmegaConf.select(merged, key)
        if before != after:
            raise ValueError(
                f"{key} cannot change for the trained adapter of run_dir={run_dir}: it was trained on "
                f"{before!r}, and {causes} would load {after!r}"
            )
    before, after = OmegaConf.select(run, DTYPE), OmegaConf.select(merged, DTYPE)
    if before == after:
        return
    if DTYPE not in command.keys:
        raise ValueError(
            f"{causes} would load the model in {after} but run_dir={run_dir} trained in {before}: "
            f"set {DTYPE}={after} on the command line to evaluate in it"
        )
    log.warning("%s=%s: the adapter of %s was trained in %s", DTYPE, after, run_dir, before)
