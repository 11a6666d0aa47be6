"""Evaluate a fine-tuned run (`run_dir=runs/train/...`) or a base model zero-/few-shot
(`model=qwen2vl data=mmhs150k shots=2`) on a split."""

import hydra
from omegaconf import DictConfig

import mmlearn.resolvers  # noqa: F401  (registers ${mmlearn.eval_root:...} for the output directory)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mmlearn.evaluation import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
