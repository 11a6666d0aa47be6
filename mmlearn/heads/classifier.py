"""The model side a head decoder reads: the backbone's last hidden state, pooled, through the head.

A VLM's head sits on its base model (`model.model`: the vision side and language model without the
LM head, so no vocabulary-wide logits are computed); a text encoder is its own backbone. The head is a
module of the model (`score_head`), so PEFT saves it with the adapter (`modules_to_save`) and a reload
puts it back. Training batches carry the answer after the prompt (the collator training shares with
generation); the answer positions are masked out of the attention, so the head reads the prompt alone,
exactly as at evaluation (a causal model's prompt states never see later tokens)."""

from __future__ import annotations

from peft import PeftModel

from mmlearn.heads.layers import HEAD
from mmlearn.heads.pooling import pool
from mmlearn.models.prompting import IGNORE_INDEX


def prompt_only(inputs: dict) -> dict:
    """The inputs without `labels`, and with the answer tokens (labels != IGNORE_INDEX) masked out."""
    labels = inputs.get("labels")
    out = {k: v for k, v in inputs.items() if k != "labels"}
    if labels is not None:
        out["attention_mask"] = out["attention_mask"] * (labels == IGNORE_INDEX).to(out["attention_mask"])
    return out


def unwrapped(model):
    """The HF model inside a PeftModel (LoRA layers and the head's wrapper in place), or the model."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


class HeadClassifier:
    """Not a torch module: the LightningModule owns the model; this reads it."""

    def __init__(self, model, pooling: str, text_encoder: bool) -> None:
        self.model = model
        self.pooling = pooling
        self.text_encoder = text_encoder

    @property
    def device(self):
        return self.model.device

    @property
    def head(self):
        return getattr(unwrapped(self.model), HEAD)

    def pooled(self, inputs: dict):
        inner = unwrapped(self.model)
        inputs = prompt_only(inputs)
        if self.text_encoder:
            hidden = inner(**inputs).last_hidden_state
        else:
            hidden = inner.model(**inputs, use_cache=False).last_hidden_state
        return pool(hidden, inputs["attention_mask"], self.pooling)

    def logits(self, inputs: dict):
        head = self.head
        return head(self.pooled(inputs).to(next(head.parameters()).dtype))
