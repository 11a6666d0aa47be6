"""A training run's recorded config, read for evaluation: filled with settings added since the run, and
the data config pointed at an unlabelled file for `split=predict`."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parents[2] / "conf"


def load_run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run_dir must be a directory written by train.py")
    return with_new_model_keys(OmegaConf.load(path))


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


def with_new_model_keys(run_cfg: DictConfig) -> DictConfig:
    """A run trained before a model setting existed (e.g. `model.vision_cache`) gets that setting's
    default from conf/model/<model.name>.yaml; every value the run recorded stays as it was."""
    options = group_options(run_cfg, ("model",))
    if not options:
        return run_cfg  # a model config from outside this repository: nothing to fill from
    current = compose_current([*options, f"paths.root_dir={run_cfg.paths.root_dir}"])
    missing = {k: current.model[k] for k in current.model if k not in run_cfg.model}
    if not missing:
        return run_cfg
    log.warning("run config has no model.%s: using today's defaults %s", ", model.".join(missing), missing)
    return OmegaConf.merge(
        run_cfg, {"model": OmegaConf.to_container(OmegaConf.create(missing), resolve=True)}
    )


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
