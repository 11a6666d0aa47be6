"""How answers are read from the model: free generation, generation constrained to the task's valid
answers, or ranking the valid answers by likelihood. Training-time validation and `evaluate.py` use the
same decoder, chosen by `decoding=generate|constrained|score`, through one seam:
`decoder.decode(DecodingContext(model, processor, prompt, task), batch)`."""

from mmlearn.decoding.base import Decoded, Decoder, tunes_thresholds, with_thresholds
from mmlearn.decoding.constrained import ConstrainedDecoder
from mmlearn.decoding.context import DecodingContext
from mmlearn.decoding.generate import GenerateDecoder
from mmlearn.decoding.generation import generate_answers, generate_kwargs
from mmlearn.decoding.score import ScoreDecoder

__all__ = [
    "ConstrainedDecoder",
    "Decoded",
    "Decoder",
    "DecodingContext",
    "GenerateDecoder",
    "ScoreDecoder",
    "generate_answers",
    "generate_kwargs",
    "tunes_thresholds",
    "with_thresholds",
]
