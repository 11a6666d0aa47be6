"""Serve a fine-tuned run (`run_dir=runs/train/...`) or a base model zero-shot (`model=qwen2vl
data=mmhs150k`) over HTTP: /v1/classify, /v1/chat/completions, /v1/models, /health and a page at /;
the same as `mmlearn serve ...` (the job: mmlearn/cli/serve.py)."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli.serve import job
from mmlearn.cli_errors import run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    job(cfg)


if __name__ == "__main__":
    run_with_hints(main, "serve")
