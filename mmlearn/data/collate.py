"""Batches of samples for training (prompt + answer) and for generation (prompt only).

The task writes the prompt and the answer; the model family's prompt format turns them into inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from mmlearn.data.images import ImageLoadError, load_rgb
from mmlearn.data.policy import InputPolicy
from mmlearn.data.sample import BadSampleError, skip_record
from mmlearn.models.prompting import IGNORE_INDEX
from mmlearn.sample import Sample


class PromptCollator:
    """Left-padded prompts with their images, ready for `generate`. With `shots` (a callable giving a
    query's in-context examples), each prompt is preceded by its examples as earlier turns. The batch
    keeps prompts, images and shots so decoders that re-encode (label scoring) ask the same question.

    An image that fails to load here (it passed the check when the split was read, so it changed since)
    stops the run naming the sample's file:row, or with data.on_bad_sample=skip leaves the batch: the
    batch is built from the other samples and lists the skipped one under "skipped" for the datamodule
    to count. Without `inputs` (a collator built outside a datamodule) a failure always raises."""

    def __init__(self, processor, prompt_format, task, shots=None, inputs: InputPolicy | None = None) -> None:
        self.processor = processor
        self.prompt_format = prompt_format
        self.task = task
        self.inputs = inputs
        self.shots = shots
        self.split = None  # the split this collator batches, named in the skip records
        self._fingerprint = prompt_fingerprint(processor, prompt_format)

    def images(self, samples: list[Sample]) -> list[list]:
        load = load_rgb if self.inputs is None else self.inputs.load_rgb
        return [[load(s.image_path)] if s.image_path is not None else [] for s in samples]

    def loadable(self, samples: list[Sample]) -> tuple[list[Sample], list[list], list[dict]]:
        """The samples whose images load, their images, and a skip record for each of the others."""
        kept, images, skipped = [], [], []
        for sample in samples:
            try:
                images.append(self.images([sample])[0])
            except ImageLoadError as err:
                message = f"{sample.source}: {err}"
                if self.inputs is None or not self.inputs.skip:
                    raise BadSampleError(
                        f"{message} (set data.on_bad_sample=skip to skip and count such samples)"
                    ) from err
                skipped.append(skip_record(sample.source, sample.id, "image_at_load", str(err)))
                continue
            kept.append(sample)
        if not kept:
            raise BadSampleError(
                "no sample of this batch could be loaded: "
                + "; ".join(f"{r['source']}: {r['reason']}" for r in skipped)
            )
        return kept, images, skipped

    def answers(self, samples: list[Sample]) -> list[str] | None:
        return None

    def __call__(self, samples: list[Sample]) -> dict:
        samples, images, skipped = self.loadable(samples)
        prompts = [self.task.prompt(s) for s in samples]
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
        batch = {
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
        if skipped:
            batch["skipped"] = [(self.split, record) for record in skipped]
        return batch


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
