"""`mmlearn caption ...` and caption.py: one caption per image of every split of a dataset, written to a
captions CSV (`id,text`) that `data.captions_file` reads."""

from omegaconf import DictConfig

from mmlearn.cli.app import hydra_command
from mmlearn.cli_errors import explained


def job(cfg: DictConfig) -> None:
    with explained(cfg, skip=("data", "model", "peft") if cfg.run_dir else ()):  # a run supplies those
        from mmlearn.captions import caption

        caption(cfg)


main, command = hydra_command(job, "caption")
