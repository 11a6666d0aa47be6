"""`mmlearn evaluate ...` and evaluate.py: a fine-tuned run (`run_dir=runs/train/...`) or a base model
zero-/few-shot (`model=qwen2vl data=mmhs150k shots=2`) on a split."""

from omegaconf import DictConfig

import mmlearn.resolvers  # noqa: F401  (registers ${mmlearn.eval_root:...} for the output directory)
from mmlearn.cli.app import hydra_command
from mmlearn.cli_errors import explained


def job(cfg: DictConfig) -> None:
    with explained(cfg, skip=("data", "model", "peft") if cfg.run_dir else ()):  # a run supplies those
        from mmlearn.evaluation import evaluate

        evaluate(cfg)


main, command = hydra_command(job, "evaluate")
