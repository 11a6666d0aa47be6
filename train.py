"""Fine-tune a vision-language model: `python train.py model=qwen2vl data=mmhs150k peft=qlora` (the same
as `mmlearn train ...`; the job: mmlearn/cli/train.py)."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli.train import job
from mmlearn.cli_errors import run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return job(cfg)


if __name__ == "__main__":
    run_with_hints(main, "train")
