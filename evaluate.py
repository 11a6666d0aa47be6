"""Evaluate a fine-tuned run (`run_dir=runs/train/...`) or a base model zero-/few-shot
(`model=qwen2vl data=mmhs150k shots=2`) on a split; the same as `mmlearn evaluate ...`."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli.evaluate import job  # registers ${mmlearn.eval_root:...} for the output directory
from mmlearn.cli_errors import run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    job(cfg)


if __name__ == "__main__":
    run_with_hints(main, "evaluate")
