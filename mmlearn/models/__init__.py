"""Models: how each VLM family is loaded, prompted and adapted."""

from mmlearn.models.spec import ModelSpec

__all__ = ["ModelSpec"]
