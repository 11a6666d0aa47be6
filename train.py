"""Fine-tune a vision-language model: `python train.py model=qwen2vl data=mmhs150k peft=qlora`."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli_errors import explained, run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with explained(
        cfg
    ):  # every ??? named before torch is imported; a missing dataset/checkpoint says what to set
        from mmlearn.training import train

        metrics = train(cfg)
    return metrics.get(f"{cfg.optimized_metric}_best")


if __name__ == "__main__":
    run_with_hints(main, "train")
