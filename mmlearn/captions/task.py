"""The task `caption.py` asks: one instruction for every image, no reference captions; the answer is the
first non-empty line of what the model generates (as seed 004's captioning task reads it)."""

from __future__ import annotations

from mmlearn.sample import Sample
from mmlearn.tasks.base import Parsed, Task
from mmlearn.tasks.captioning import clean_caption


class ImageDescription(Task):
    """No reference sets the budget: caption.py generates up to its `max_new_tokens`."""

    kind = "captioning"

    def __init__(self, instruction: str) -> None:
        if not instruction.strip():
            raise ValueError("prompt= must be a non-empty instruction")
        self.instruction = instruction

    def prompt(self, sample: Sample) -> str:
        return self.instruction

    def answer(self, sample: Sample) -> str:
        raise ValueError("caption.py writes captions; it has no reference caption to train on")

    def parse(self, output: str, sample: Sample) -> Parsed:
        caption = clean_caption(output)
        return Parsed((caption,)) if caption else Parsed(None)

    def longest_answer(self) -> str:
        return ""
