"""Text encoders as a model kind (`conf/model/{bart,modernbert,distilbert}.yaml`): a checkpoint loaded
as its bare encoder (`AutoModel`) under a classification head, or, for `head=nli`, as the NLI sequence
classifier it was released as. They read text only and have no chat template: the prompt is the task's
prompt as it is, tokenized with the checkpoint's own framing ([CLS] ... [SEP], <s> ... </s>), right-padded
(absolute position embeddings count from the first token), truncated to `max_length`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from mmlearn.heads.pooling import POOLINGS
from mmlearn.models.spec import ModelSpec


class TextEncoderPrompt:
    """The prompt format of a text encoder: the task's prompt, tokenized as one text."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def render(self, processor, prompt: str, n_images: int = 0, shots=()) -> str:
        self.check_images([[None] * n_images])
        if shots:
            raise ValueError("text encoders take no in-context examples (shots=0)")
        return prompt

    def check_images(self, images: list[list]) -> None:
        if any(images):
            raise ValueError("a text encoder reads text only: use modality=text")

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        raise ValueError(
            "a text encoder does not generate answers: it answers through head=linear or head=nli"
        )

    def encode(self, processor, prompts: list[str], images: list[list], answers=None, shots=None) -> dict:
        """Right-padded token ids of the prompts; `answers` (training batches) are not text for a head
        and are not encoded."""
        if shots is not None and any(shots):
            raise ValueError("text encoders take no in-context examples (shots=0)")
        self.check_images(images)
        return dict(
            processor(prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        )

    def recipe(self, processor, prompt: str) -> dict:
        """mmlearn.json's rendering and processor call (mmlearn/artefacts/prompt_recipe.py)."""
        return {
            "template": prompt,
            "processor_call": {
                "images": "none",
                "padding": True,
                "padding_side": "right",
                "kwargs": {"truncation": True, "max_length": self.max_length},
                "drop": [],
            },
        }


@dataclass
class TextEncoderSpec(ModelSpec):
    """A text encoder checkpoint; `pooling` is how its head reads the last hidden state by default
    (`cls`: the first token; `last`: the last non-padding token, BART's final </s>)."""

    pooling: str
    auto_class: ClassVar[str] = "AutoModel"  # the bare encoder the head sits on (mmlearn.json)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {POOLINGS}, got {self.pooling!r}")

    def load_processor(self):
        self.ensure_local()
        return AutoTokenizer.from_pretrained(
            self.pretrained, revision=self.revision, trust_remote_code=self.trust_remote_code
        )

    def load_model(self, quantization=None, device_map=None):
        """The bare encoder (or encoder-decoder) under the checkpoint's task head, if any."""
        self.ensure_local()
        model = AutoModel.from_pretrained(self.pretrained, **self._kwargs(quantization, device_map))
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model

    def load_sequence_classifier(self, quantization=None, device_map=None):
        """The checkpoint as the sequence classifier it was released as (an NLI model for head=nli)."""
        self.ensure_local()
        return AutoModelForSequenceClassification.from_pretrained(
            self.pretrained, **self._kwargs(quantization, device_map)
        )


def is_text_encoder(spec) -> bool:
    return isinstance(spec, TextEncoderSpec)


def default_pooling(spec) -> str:
    """A text encoder's own pooling; a decoder-only VLM's summary is its last non-padding token."""
    return spec.pooling if is_text_encoder(spec) else "last"
