"""Batches of samples for training (prompt + answer) and for generation (prompt only).

The task writes the prompt and the answer; the model family's prompt format turns them into inputs.
"""

from __future__ import annotations

from mmlearn.data.images import load_rgb
from mmlearn.data.sample import Sample
from mmlearn.models.prompting import IGNORE_INDEX


class PromptCollator:
    """Left-padded prompts with their images, ready for `generate`."""

    def __init__(self, processor, prompt_format, task) -> None:
        self.processor = processor
        self.prompt_format = prompt_format
        self.task = task

    def images(self, samples: list[Sample]) -> list[list]:
        return [[load_rgb(s.image_path)] if s.image_path is not None else [] for s in samples]

    def answers(self, samples: list[Sample]) -> list[str] | None:
        return None

    def __call__(self, samples: list[Sample]) -> dict:
        inputs = self.prompt_format.encode(
            self.processor,
            [self.task.prompt(s) for s in samples],
            self.images(samples),
            answers=self.answers(samples),
        )
        return {"inputs": inputs, "samples": samples, "ids": [s.id for s in samples]}


class TrainCollator(PromptCollator):
    """Prompt + answer + end token; labels mask everything but the answer and end token."""

    def answers(self, samples: list[Sample]) -> list[str]:
        return [self.task.answer(s) for s in samples]


__all__ = ["IGNORE_INDEX", "PromptCollator", "TrainCollator"]
