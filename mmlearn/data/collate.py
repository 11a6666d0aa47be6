"""Batches of samples for training (prompt + answer) and for generation (prompt only).

The task writes the prompt and the answer; the model family's prompt format turns them into inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from mmlearn.data.images import load_rgb
from mmlearn.data.sample import Sample
from mmlearn.models.prompting import IGNORE_INDEX


class PromptCollator:
    """Left-padded prompts with their images, ready for `generate`. With `shots` (a callable giving a
    query's in-context examples), each prompt is preceded by its examples as earlier turns. The batch
    keeps prompts, images and shots so decoders that re-encode (label scoring) ask the same question."""

    def __init__(self, processor, prompt_format, task, shots=None) -> None:
        self.processor = processor
        self.prompt_format = prompt_format
        self.task = task
        self.shots = shots
        self._fingerprint = prompt_fingerprint(processor, prompt_format)

    def images(self, samples: list[Sample]) -> list[list]:
        return [[load_rgb(s.image_path)] if s.image_path is not None else [] for s in samples]

    def answers(self, samples: list[Sample]) -> list[str] | None:
        return None

    def __call__(self, samples: list[Sample]) -> dict:
        prompts = [self.task.prompt(s) for s in samples]
        images = self.images(samples)
        examples = [self.shots(s) for s in samples] if self.shots is not None else None
        shots = None
        extra = {}  # formats without few-shot support keep their plain signature
        if examples is not None:
            shots = [
                [(self.task.prompt(x), self.images([x])[0], self.task.answer(x)) for x in row]
                for row in examples
            ]
            extra["shots"] = shots
        inputs = self.prompt_format.encode(
            self.processor, prompts, images, answers=self.answers(samples), **extra
        )
        return {
            "inputs": inputs,
            "samples": samples,
            "ids": [s.id for s in samples],
            "prompts": prompts,
            "images": images,
            "shots": shots,
            "shot_ids": None if examples is None else [[x.id for x in row] for row in examples],
            "prompt_ids": [
                prompt_id(self._fingerprint, self.task, s, row)
                for s, row in zip(samples, shots or [[]] * len(samples), strict=True)
            ],
        }


class TrainCollator(PromptCollator):
    """Prompt + answer + end token; labels mask everything but the answer and end token."""

    def answers(self, samples: list[Sample]) -> list[str]:
        return [self.task.answer(s) for s in samples]


def prompt_fingerprint(processor, prompt_format) -> str:
    """The prompt format's settings and the family's chat template: what shapes every prompt."""
    settings = {
        k: v for k, v in vars(prompt_format).items() if isinstance(v, (str, int, float, bool, type(None)))
    }
    template = getattr(processor, "chat_template", None)
    return json.dumps([type(prompt_format).__name__, settings, template], sort_keys=True, default=str)


def prompt_id(fingerprint: str, task, sample: Sample, shots: list) -> str:
    """A hash of the prompt template (the task's prompt with the sample's text left as a placeholder)
    and the in-context examples, so predictions from different runs can be matched."""
    placeholder = dataclasses.replace(sample, text=None if sample.text is None else "{text}")
    key = json.dumps([fingerprint, task.prompt(placeholder), [(p, a) for p, _, a in shots]])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


__all__ = ["IGNORE_INDEX", "PromptCollator", "TrainCollator"]
