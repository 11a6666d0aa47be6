"""Evaluate a training run's adapter on a split: `python evaluate.py run_dir=runs/train/...`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mmlearn.evaluation import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
