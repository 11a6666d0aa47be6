"""`compare.py`: evaluate every mode on the same split with the same prompt and decoder, then report."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mmlearn import conf_dir
from mmlearn.comparison.report import write_report

log = logging.getLogger(__name__)

# What a mode may change; everything else (model, data, split, prompt, decoding) is shared. `backend`:
# an option of conf/backend (`backend: openai`), or its keys with the option named
# (`backend: {option: openai, model: gpt-4o}`): an API mode beside local ones.
MODE_KEYS = {"run_dir", "shots", "shots_per_class", "shot_seed", "resample", "backend"}
COMPARE_KEYS = ("modes", "reference", "bootstrap")


def check_modes(cfg: DictConfig) -> None:
    """Every mode's mandatory value, at once, before anything loads: merged onto the shared config a
    `???` would be dropped, and `fine_tuned` would silently evaluate the base model."""
    if not cfg.modes:
        raise ValueError(
            "modes is empty: name at least two, e.g. modes={zero_shot: {}, two_shot: {shots: 2}}"
        )
    missing = [
        f"modes.{name}.{key}"
        for name, delta in cfg.modes.items()
        for key in delta or {}
        if OmegaConf.is_missing(delta, key)
    ]
    if missing:
        names = sorted({key.split(".")[1] for key in missing})
        raise ValueError(
            f"{', '.join(missing)} must be set (a run_dir is a training run of this model and data, "
            f"e.g. {missing[0]}=runs/train/<run>/<time>), or the mode left out: "
            + " ".join(f"~modes.{name}" for name in names)
        )


def mode_configs(cfg: DictConfig, out: Path) -> dict[str, DictConfig]:
    check_modes(cfg)
    shared = OmegaConf.to_container(cfg, resolve=True)
    for key in COMPARE_KEYS:
        shared.pop(key)
    configs = {}
    for name, delta in cfg.modes.items():
        unknown = set(delta or {}) - MODE_KEYS
        if unknown:
            raise ValueError(
                f"modes.{name}: {sorted(unknown)} cannot differ between modes (allowed: {sorted(MODE_KEYS)})"
            )
        delta = with_backend_option(name, delta or {})
        configs[name] = OmegaConf.merge(shared, delta, {"paths": {"output_dir": str(out / name)}})
    return configs


def with_backend_option(name: str, delta) -> DictConfig:
    """A mode's `backend` as that conf/backend option's keys, with the mode's own on top."""
    delta = OmegaConf.create(delta)
    if "backend" not in delta:
        return delta
    backend = delta.backend
    option, keys = (backend, {}) if isinstance(backend, str) else (backend.get("option"), dict(backend))
    keys.pop("option", None)
    path = conf_dir() / "backend" / f"{option}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"modes.{name}.backend: {option!r} is not an option of conf/backend ({options})")
    delta.backend = OmegaConf.merge(OmegaConf.load(path), keys)
    return delta


def shared_overrides() -> list[str]:
    """compare.py's command line less its own keys: what a mode with a run_dir applies to the run's config."""
    from mmlearn.evaluation.command_line import hydra_command_line

    own = lambda o: o.lstrip("+~").split("=")[0].split(".")[0] in COMPARE_KEYS  # noqa: E731
    return [o for o in hydra_command_line() if not own(o)]


def compare(cfg: DictConfig) -> list[dict]:
    out = Path(cfg.paths.output_dir)
    configs = mode_configs(cfg, out)
    from mmlearn.evaluation import evaluate  # after the modes are checked: a config error loads nothing

    for name, mode_cfg in configs.items():
        log.info("mode %s", name)
        evaluate(mode_cfg, shared_overrides())  # each mode's Trainer shows its progress bar
    table = write_report(
        {name: out / name for name in configs}, cfg.reference, out, cfg.bootstrap.samples, cfg.bootstrap.seed
    )
    log.info("comparison written to %s", out / "report.md")
    return table
