"""`mmlearn compare ...` and compare.py: zero-shot, few-shot and fine-tuned on one split in one report
(`model=qwen2vl data=mmhs150k modes.fine_tuned.run_dir=runs/train/...`)."""

from omegaconf import DictConfig

import mmlearn.resolvers  # noqa: F401  (evaluate.yaml's output directory resolver)
from mmlearn.cli.app import hydra_command
from mmlearn.cli_errors import explained


def job(cfg: DictConfig) -> None:
    with explained(cfg, skip=("modes",)):  # compare names a mode's missing run_dir itself
        from mmlearn.comparison.run import compare

        compare(cfg)


main, command = hydra_command(job, "compare")
