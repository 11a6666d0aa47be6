"""`mmlearn serve ...` and serve.py: a fine-tuned run (`run_dir=runs/train/...`) or a base model
zero-shot (`model=qwen2vl data=mmhs150k`) over HTTP (conf/serve.yaml; mmlearn/serving/)."""

from omegaconf import DictConfig

import mmlearn.resolvers  # noqa: F401  (evaluate.yaml's resolvers, which serve.yaml composes)
from mmlearn.cli.app import hydra_command
from mmlearn.cli_errors import explained


def job(cfg: DictConfig) -> None:
    with explained(cfg, skip=("data", "model", "peft") if cfg.run_dir else ()):  # a run supplies those
        from mmlearn.evaluation.command_line import hydra_command_line
        from mmlearn.serving import serve

        serve(cfg, hydra_command_line())


main, command = hydra_command(job, "serve")
