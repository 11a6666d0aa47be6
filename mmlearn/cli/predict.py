"""`mmlearn predict ...` and predict.py: answers for new data (a CSV/JSONL table or a folder of images)
from a run (`run_dir=runs/train/...`) or a base model zero-shot, as `evaluate.py split=predict` gives them."""

from omegaconf import DictConfig

import mmlearn.resolvers  # noqa: F401  (registers ${mmlearn.eval_root:...} for the output directory)
from mmlearn.cli.app import hydra_command
from mmlearn.cli_errors import explained


def job(cfg: DictConfig) -> None:
    with explained(cfg, skip=("data", "model", "peft") if cfg.run_dir else ()):  # a run supplies those
        from mmlearn.prediction import predict

        predict(cfg)


main, command = hydra_command(job, "predict")
