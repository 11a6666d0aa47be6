"""How answers are read from the model: free generation, generation constrained to the task's valid
answers, or ranking the valid answers by likelihood. Training-time validation and `evaluate.py` use the
same decoder, chosen by `decoding=generate|constrained|score`."""

from mmlearn.decoding.base import Decoded, Decoder
from mmlearn.decoding.constrained import ConstrainedDecoder
from mmlearn.decoding.generate import GenerateDecoder
from mmlearn.decoding.score import ScoreDecoder

__all__ = ["ConstrainedDecoder", "Decoded", "Decoder", "GenerateDecoder", "ScoreDecoder"]
