"""`mmlearn export ...` and export.py: a training run's adapter, or with `merge=true` a merged model."""

from omegaconf import DictConfig

from mmlearn.cli.app import hydra_command
from mmlearn.cli_errors import explained


def job(cfg: DictConfig) -> None:
    with explained(cfg):
        from mmlearn.export import export

        export(cfg)


main, command = hydra_command(job, "export")
