"""Which of a run's recorded values were derived from another setting, so that they follow it when an
evaluation's command line changes that setting: the demo's `data.test_file: ${.root}/test.csv` follows
`data.root`, every `data.modality: ${modality}` follows `modality`, `data.seed` follows `seed`.

The run's config.yaml holds resolved values only; the links are read from today's option files of the
groups the run names (`data.name`, `model.name`, ...), and a link counts only where it still gives the
value the run recorded (a value the run set explicitly stays as it was)."""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from mmlearn.evaluation.command_line import CommandLine
from mmlearn.evaluation.config import compose_current, group_options

LINKED_GROUPS = ("data", "model", "modality", "peft")
REFERENCE = re.compile(r"\$\{(\.*)([A-Za-z_][\w.]*)\}")  # ${a.b} or ${.a}; resolver calls are skipped


def _leaves(node, prefix: str):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}")
    else:
        yield prefix, node


def references(key: str, value: str) -> list[str]:
    """The absolute keys an interpolation at `key` reads (`${.root}` at data.test_file: data.root)."""
    parts = key.split(".")
    out = []
    for dots, name in REFERENCE.findall(value):
        base = parts[: len(parts) - len(dots)] if dots else []
        out.append(".".join([*base, name]))
    return out


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")


def _gives_recorded_value(run: DictConfig, key: str, interpolation: str) -> bool:
    probe = OmegaConf.create(OmegaConf.to_container(run))
    OmegaConf.update(probe, key, interpolation, merge=False)
    try:
        return OmegaConf.select(probe, key, throw_on_resolution_failure=True) == OmegaConf.select(run, key)
    except Exception:  # a link that does not resolve against the run is no link
        return False


def derived_settings(run: DictConfig, command: CommandLine) -> dict[str, str]:
    """{key: interpolation} for each setting of a kept group that the run derived from one the
    command line changes, and that the command line does not set itself."""
    options = group_options(run, LINKED_GROUPS)
    if not options or not command.changed:
        return {}
    structure = compose_current([*options, f"paths.root_dir={run.paths.root_dir}"])
    out = {}
    for group in LINKED_GROUPS:
        if group in command.groups or f"{group}={run[group].name}" not in options:
            continue
        for key, value in _leaves(OmegaConf.to_container(structure[group], resolve=False), group):
            if not isinstance(value, str) or any(_related(key, c) for c in command.changed):
                continue
            follows = any(_related(ref, c) for ref in references(key, value) for c in command.changed)
            if follows and _gives_recorded_value(run, key, value):
                out[key] = value
    return out
