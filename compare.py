"""Compare zero-shot, few-shot and fine-tuned on one split in one report:
`python compare.py model=qwen2vl data=mmhs150k modes.fine_tuned.run_dir=runs/train/...`."""

import hydra
from omegaconf import DictConfig

import mmlearn.resolvers  # noqa: F401  (evaluate.yaml's output directory resolver)
from mmlearn.cli_errors import explained, run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    with explained(cfg, skip=("modes",)):  # compare names a mode's missing run_dir itself
        from mmlearn.comparison.run import compare

        compare(cfg)


if __name__ == "__main__":
    run_with_hints(main, "compare")
