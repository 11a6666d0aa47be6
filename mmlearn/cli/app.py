"""A Hydra sub-command from its job: the `@hydra.main` app on the packaged configs, and the command that
runs it with mmlearn.cli_errors' hints (did-you-mean, every `???` named) under Hydra's own message."""

from __future__ import annotations

from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from mmlearn.cli_errors import run_with_hints

CONFIG_PATH = "pkg://mmlearn.conf"  # conf/ (pyproject.toml's package-dir): a wheel's or the checkout's


def hydra_command(job: Callable[[DictConfig], object], config_name: str):
    """`(main, command)`: Hydra names the job after `job`'s module (mmlearn.cli.train: `train`, as for
    train.py), which gives the log file and the `--help` header their names."""
    main = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)(job)

    def command() -> None:
        run_with_hints(main, config_name)

    return main, command
