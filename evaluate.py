"""Evaluate a fine-tuned run (`run_dir=runs/train/...`) or a base model zero-/few-shot
(`model=qwen2vl data=mmhs150k shots=2`) on a split."""

import hydra
from omegaconf import DictConfig

import mmlearn.resolvers  # noqa: F401  (registers ${mmlearn.eval_root:...} for the output directory)
from mmlearn.cli_errors import explained, run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with explained(cfg, skip=("data", "model", "peft") if cfg.run_dir else ()):  # a run supplies those
        from mmlearn.evaluation import evaluate

        evaluate(cfg)


if __name__ == "__main__":
    run_with_hints(main, "evaluate")
