"""Export a training run: `python export.py run_dir=runs/train/... merge=true` writes a merged model
(the same as `mmlearn export ...`)."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli.export import job
from mmlearn.cli_errors import run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    job(cfg)


if __name__ == "__main__":
    run_with_hints(main, "export")
