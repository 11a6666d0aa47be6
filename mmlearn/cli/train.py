"""`mmlearn train ...` and train.py: fine-tune a vision-language model."""

from omegaconf import DictConfig

from mmlearn.cli.app import hydra_command
from mmlearn.cli_errors import explained


def job(cfg: DictConfig) -> float | None:
    """Train and test; the metric a sweep optimises. Every ??? is named before torch is imported, and a
    missing dataset or checkpoint says what to set."""
    with explained(cfg):
        from mmlearn.training import train

        metrics = train(cfg)
    return metrics.get(f"{cfg.optimized_metric}_best")


main, command = hydra_command(job, "train")
