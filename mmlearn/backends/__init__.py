"""Backends other than the model in process: `backend=openai` evaluates through any OpenAI-compatible
chat-completions endpoint, as a decoder on the same seam as the local ones (`decode(context, batch)`),
so the Trainer pass, metrics, predictions, reports and compare.py are the local path's."""

from mmlearn.backends.module import EndpointModule, build_endpoint_module, usage_metrics, uses_endpoint
from mmlearn.backends.openai import BudgetExceeded, EndpointDecoded, OpenAIBackend

__all__ = [
    "BudgetExceeded",
    "EndpointDecoded",
    "EndpointModule",
    "OpenAIBackend",
    "build_endpoint_module",
    "usage_metrics",
    "uses_endpoint",
]
