"""Answer new data with a fine-tuned run (`run_dir=runs/train/... input=new.csv output=answers.jsonl`) or a
base model zero-shot; the same as `mmlearn predict ...`."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli.predict import job  # registers ${mmlearn.eval_root:...} for the output directory
from mmlearn.cli_errors import run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    job(cfg)


if __name__ == "__main__":
    run_with_hints(main, "predict")
