"""A loaded model side with its data config's task, prompt format and input rules: raw items in,
prediction records out, through the collator and decoder `evaluate.py` uses."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmlearn.data.collate import PromptCollator
from mmlearn.data.images import BytesImage, ImageLoadError
from mmlearn.data.sample import BadSampleError
from mmlearn.decoding.records import prediction_record
from mmlearn.sample import Sample


class InputError(ValueError):
    """An item that cannot be answered; `field` names what is wrong (e.g. `items[1].image`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Item:
    """One input as a client sends it: the text and the image bytes the run's modality uses (an
    image-only run ignores text, a text-only run ignores images), the options of a multiple-choice
    question, the hint shown with it. `name` is how messages refer to it (`items[3]`)."""

    text: str | None = None
    image: bytes | None = None
    choices: tuple[str, ...] = ()
    context: str | None = None
    id: str | None = None
    name: str = "item"


class Predictor:
    """`config`: the evaluation config (a run's config with the command line on top, or a base model's);
    `datamodule`: its data config, connected to the module's processor; `module`: the loaded model and
    decoder. `answer` is safe to call from one thread at a time."""

    def __init__(self, config, datamodule, module, name: str) -> None:
        self.config = config
        self.datamodule = datamodule
        self.module = module
        self.name = name
        self.task = datamodule.task
        self.modality = datamodule.modality
        self.collator = PromptCollator(
            module.processor, module.spec.prompt, self.task, inputs=datamodule.inputs
        )

    @property
    def decoder(self):
        return self.module.decoder

    @property
    def context(self):
        return self.module.decoding_context

    def describe(self) -> dict:
        """What is served: the run's name, task, labels, modality and decoder."""
        return {
            "id": self.name,
            "task": self.task.kind,
            "labels": list(getattr(self.task, "labels", None) or []) or None,
            "modality": self.modality.name,
            "decoding": self.decoder.name,
            "model": self.config.model.name,
            "data": self.config.data.name,
        }

    def sample(self, item: Item, index: int = 0) -> Sample:
        """The Sample the run's readers would make of `item`, its image checked (pixel limit from the
        header, before decoding) and decoded once; an InputError names the field otherwise."""
        text = (item.text or "").strip() or None
        if self.modality.text and text is None:
            raise InputError(f"{item.name}.text", f"required: the run's modality is {self.modality.name}")
        image = None
        if self.modality.image:
            if not item.image:
                raise InputError(
                    f"{item.name}.image", f"required: the run's modality is {self.modality.name}"
                )
            image = BytesImage(item.image, f"{item.name}.image")
            try:
                self.datamodule.inputs.check_image(image)
            except (ImageLoadError, BadSampleError) as err:
                raise InputError(f"{item.name}.image", str(err)) from err
        if self.task.kind == "multiple_choice" and not item.choices:
            raise InputError(f"{item.name}.choices", "a multiple-choice question needs its options")
        return Sample(
            id=item.id or str(index),
            text=text if self.modality.text else None,
            image_path=image,
            labels=(),
            source=item.name,
            choices=tuple(item.choices),
            context=item.context,
        )

    def answer(self, samples: list[Sample]) -> list[dict]:
        """One record per sample, as predictions/<split>.jsonl writes it (without gold labels):
        id, output, parsed, parse_ok and, for decoders that compute them, per-class scores."""
        return self.answer_batch(samples)[0]

    @torch.no_grad()
    def answer_batch(self, samples: list[Sample]) -> tuple[list[dict], list[dict]]:
        """`answer`'s records, and a skip record for each sample whose image failed to load now
        (data.on_bad_sample=skip; with error, that raises naming its file:row), in one decoder call."""
        batch = self.collator(samples)
        device = self.context.device
        batch["inputs"] = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch["inputs"].items()}
        decoded = self.decoder.decode(self.context, batch)
        records = [prediction_record(self.task, batch, i, d, labelled=False) for i, d in enumerate(decoded)]
        return records, [record for _, record in batch.get("skipped", ())]
