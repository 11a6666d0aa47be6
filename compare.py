"""Compare zero-shot, few-shot and fine-tuned on one split in one report:
`python compare.py model=qwen2vl data=mmhs150k modes.fine_tuned.run_dir=runs/train/...`
(the same as `mmlearn compare ...`)."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli.compare import job  # registers evaluate.yaml's output directory resolver
from mmlearn.cli_errors import run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    job(cfg)


if __name__ == "__main__":
    run_with_hints(main, "compare")
