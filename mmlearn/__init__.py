"""mmlearn: Hydra + Lightning fine-tuning and evaluation of vision-language models."""

__version__ = "0.1.0"
