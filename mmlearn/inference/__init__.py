"""Answering new inputs with a trained run (or a base model) exactly as `evaluate.py` answers a split:
the run's prompt, input rules, collator and decoder. Used by `serve.py` and `predict.py`."""

from mmlearn.inference.loading import load_predictor
from mmlearn.inference.predictor import InputError, Item, Predictor

__all__ = ["InputError", "Item", "Predictor", "load_predictor"]
