"""Classification heads (`head=linear`) and zero-shot NLI (`head=nli`): answers read from logits in one
forward pass, through the same decoder seam as generated answers (mmlearn/decoding/base.py)."""

from mmlearn.heads.building import build_head_module, head_kind
from mmlearn.heads.decoder import HeadDecoder
from mmlearn.heads.layers import ClassificationHead
from mmlearn.heads.nli import NLIDecoder
from mmlearn.heads.pooling import pool
from mmlearn.heads.text_encoders import TextEncoderPrompt, TextEncoderSpec

__all__ = [
    "ClassificationHead",
    "HeadDecoder",
    "NLIDecoder",
    "TextEncoderPrompt",
    "TextEncoderSpec",
    "build_head_module",
    "head_kind",
    "pool",
]
