"""Caption every image of a dataset with a VLM (`model=qwen2vl data=perceptsent modality=image
output=captions.csv`) or a captioning run (`run_dir=...`); the same as `mmlearn caption ...`."""

import hydra
from omegaconf import DictConfig

from mmlearn.cli.caption import job
from mmlearn.cli_errors import run_with_hints


@hydra.main(version_base="1.3", config_path="conf", config_name="caption")
def main(cfg: DictConfig) -> None:
    job(cfg)


if __name__ == "__main__":
    run_with_hints(main, "caption")
