"""LightningModules for `head=linear` (a classification head trained on a VLM or a text encoder) and
`head=nli` (zero-shot NLI, evaluation only). Validation, testing, prediction, metrics and checkpoint
filtering are AnswerModule's and VLMFineTuner's own: only the model side and the loss differ, and answers
come out through the same decoder seam (`decoder.decode(context, batch)`)."""

from __future__ import annotations

import logging

from mmlearn.answering import AnswerModule
from mmlearn.decoding.context import DecodingContext
from mmlearn.heads.attach import head_parameters, load_head_model, new_head, save_head, towers_present
from mmlearn.heads.classifier import HeadClassifier
from mmlearn.heads.loss import class_counts, class_weights, head_loss, targets
from mmlearn.heads.text_encoders import default_pooling, is_text_encoder
from mmlearn.models.adapters import describe_trainable
from mmlearn.models.towers import describe_towers, parameter_groups
from mmlearn.module import VLMFineTuner

log = logging.getLogger(__name__)


def refuse_vision_cache(spec) -> None:
    if (spec.vision_cache or {}).get("enabled"):
        raise ValueError("model.vision_cache.enabled=true is not supported with a head (head=linear|nli)")


class HeadFineTuner(VLMFineTuner):
    """`settings`: conf/head/linear.yaml as plain data (`module`: the head's layers and pooling;
    `loss`: class weights); `decoder`: its `decoder:` built (a HeadDecoder)."""

    def __init__(
        self,
        spec,
        task,
        *,
        settings,
        adapter,
        quantization,
        towers,
        optimizer,
        scheduler,
        decoder,
        adapter_dir=None,
    ) -> None:
        AnswerModule.__init__(self, task, decoder)  # VLMFineTuner's own __init__ loads a generating model
        self.spec, self.towers = spec, towers_present(spec, towers)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        refuse_vision_cache(spec)
        self.settings = settings
        self.processor = spec.load_processor()
        base = spec.load_model(quantization=quantization)
        head = new_head(base, task.num_labels, settings["module"])
        self.model = load_head_model(
            spec,
            base,
            head,
            adapter=adapter,
            plan=self.towers,
            quantized=quantization is not None,
            adapter_dir=adapter_dir,
        )
        self.model.train()
        self.vision_cache = None
        pooling = settings["module"]["pooling"]
        pooling = default_pooling(spec) if pooling == "auto" else pooling
        self.classifier = HeadClassifier(self.model, pooling, is_text_encoder(spec))
        self.decoding_context = DecodingContext(self.classifier, self.processor, spec.prompt, task)
        self.is_peft = adapter is not None or adapter_dir is not None
        self.strict_loading = False
        self.class_weights = None
        log.info(
            "%s (%s; head %s)", describe_trainable(self.model), describe_towers(self.model, spec), pooling
        )

    def setup(self, stage: str) -> None:
        """Class weights from the training split's label counts (head.loss.class_weights)."""
        kind = self.settings["loss"]["class_weights"]
        if stage != "fit" or kind is None:
            return
        samples = self.trainer.datamodule.splits["train"]
        counts = class_counts(self.task, samples)
        self.class_weights = class_weights(kind, counts, self.task.labels, len(samples))
        log.info(
            "class weights (%s): %s",
            kind,
            dict(zip(self.task.labels, self.class_weights.tolist(), strict=True)),
        )

    def training_step(self, batch, batch_idx):
        logits = self.classifier.logits(batch["inputs"])
        target = targets(self.task, batch["samples"])
        loss = head_loss(logits, target, self.task.kind, self.class_weights)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def configure_optimizers(self):
        groups = parameter_groups(self.model, self.spec, self.towers)
        groups.append({"params": head_parameters(self.model), "name": "head"})
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, num_training_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def save_trained(self, directory) -> None:
        """The adapter (the head inside it), or the full model with head.safetensors next to it."""
        super().save_trained(directory)
        if not self.is_peft:
            save_head(self.model, directory)


class NLIModule(AnswerModule):
    """Zero-shot: the NLI checkpoint as released, nothing trainable; `evaluate.py model=bart head=nli`."""

    def __init__(self, spec, task, *, decoder, quantization=None) -> None:
        if not is_text_encoder(spec):
            raise ValueError(f"head=nli needs an NLI text encoder (model=bart), got model={spec.name}")
        super().__init__(task, decoder)
        self.spec = spec
        self.processor = spec.load_processor()
        self.model = spec.load_sequence_classifier(quantization=quantization)
        self.model.requires_grad_(False)
        self.model.eval()
        self.is_peft = False
        self.decoding_context = DecodingContext(self.model, self.processor, spec.prompt, task)

    def training_step(self, batch, batch_idx):
        raise ValueError("head=nli is zero-shot: evaluate it (evaluate.py model=bart head=nli data=...)")
