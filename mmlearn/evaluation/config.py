"""A training run's recorded config, read for evaluation: filled with settings added since the run, and
the data config pointed at an unlabelled file for `split=predict`."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mmlearn import conf_dir

log = logging.getLogger(__name__)

CONF = conf_dir()
FILLED_GROUPS = ("model", "data")  # groups whose option a run records by name


def load_run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run_dir must be a directory written by train.py")
    return with_new_settings(with_moved_settings(OmegaConf.load(path)))


def with_moved_settings(run_cfg: DictConfig) -> DictConfig:
    """A run recorded before a setting moved gets it at its new home: `extra_new_tokens` (top level until
    0.1) is `decoding.extra_new_tokens` of decoding=generate, the one decoder that reads it; the sports
    captions' reference file (`data.captions_file` until 0.1) is `data.references_file`, since
    `data.captions_file` now gives any reader its text."""
    old_references = (
        str(OmegaConf.select(run_cfg, "data._target_", default="")).endswith(".SportsCaptionsDataModule")
        and "references_file" not in run_cfg.data
    )
    if "extra_new_tokens" not in run_cfg and not old_references:
        return run_cfg
    moved = OmegaConf.create(OmegaConf.to_container(run_cfg))
    if "extra_new_tokens" in moved:
        value = moved.pop("extra_new_tokens")
        decoding = moved.get("decoding")
        if decoding is not None and str(decoding.get("_target_", "")).endswith(".GenerateDecoder"):
            decoding.setdefault("extra_new_tokens", value)
    if old_references:
        moved.data.references_file = moved.data.pop("captions_file")
    return moved


def compose_current(overrides: list[str]) -> DictConfig:
    """conf/evaluate.yaml as it composes today with `overrides`, inside evaluate.py's Hydra app or not."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("evaluate", overrides=overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("evaluate", overrides=overrides)


def group_options(run_cfg: DictConfig, groups: tuple[str, ...]) -> list[str]:
    """`<group>=<the run's option>` for each group whose option file exists today (by its `name`)."""
    names = {group: OmegaConf.select(run_cfg, f"{group}.name") for group in groups}
    return [f"{g}={n}" for g, n in names.items() if n is not None and (CONF / g / f"{n}.yaml").is_file()]


def with_new_settings(run_cfg: DictConfig) -> DictConfig:
    """A run trained before a setting existed (e.g. `model.vision_cache`, `data.predict_file`) gets that
    setting's default from today's option file of its group (conf/<group>/<name>.yaml), resolved
    against the run's own values; every value the run recorded stays as it was."""
    options = group_options(run_cfg, FILLED_GROUPS)
    if not options:
        return run_cfg  # configs from outside this repository: nothing to fill from
    current = compose_current([*options, f"paths.root_dir={run_cfg.paths.root_dir}"])
    missing = {}
    for group in (option.split("=")[0] for option in options):
        raw = OmegaConf.to_container(current[group], resolve=False)
        missing[group] = {k: v for k, v in raw.items() if k not in run_cfg[group]}
    if not any(missing.values()):
        return run_cfg
    for group, keys in missing.items():
        if keys:
            log.warning("run config has no %s.%s: using today's defaults", group, f", {group}.".join(keys))
    return OmegaConf.create(OmegaConf.to_container(OmegaConf.merge(run_cfg, missing), resolve=True))


def with_predict_file(source: DictConfig, predict_file: str | None) -> DictConfig:
    """The evaluated data config reading `predict_file` as the predict split (data=csv: a path as
    given; data=hf and the seed layouts: under data.root)."""
    if "predict_file" not in source.data:
        raise ValueError(
            f"split=predict: data={source.data.name} reads no unlabelled file (no data.predict_file)"
        )
    predict_file = predict_file or source.data.predict_file
    if predict_file is None:
        raise ValueError(f"split=predict needs predict_file=<an unlabelled file of data={source.data.name}>")
    return OmegaConf.merge(source, {"data": {"predict_file": predict_file}})
