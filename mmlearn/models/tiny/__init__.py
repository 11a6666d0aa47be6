"""Tiny random checkpoints of each family, for offline runs and tests. Their sizes live in
conf/model/<family>_tiny.yaml (shared ones in conf/model_tiny_common.yaml): the builders have no
defaults of their own."""

from __future__ import annotations

from pathlib import Path

from mmlearn import conf_dir

CONF = conf_dir()


def build_preset(preset: str, output_dir: str | Path) -> Path:
    """Write the checkpoint of `model=<preset>` (e.g. `qwen2vl_tiny`) into `output_dir`, with the
    sizes that preset's YAML gives, outside a Hydra app or inside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    overrides = [f"model={preset}"]
    if GlobalHydra.instance().is_initialized():
        build = compose("train", overrides=overrides).model.build
    else:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            build = compose("train", overrides=overrides).model.build
    if build is None:
        raise ValueError(f"model={preset} is a hub checkpoint, not a preset built locally")
    return instantiate(build)(output_dir)
