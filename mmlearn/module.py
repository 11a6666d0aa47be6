"""The LightningModule: a HF vision-language model with its adapter, trained on answer tokens and
validated by reading answers through its decoder and scoring them with the task metrics (the
evaluation steps: mmlearn/answering.py)."""

from __future__ import annotations

import logging

from mmlearn.answering import AnswerModule
from mmlearn.decoding.context import DecodingContext
from mmlearn.models.adapters import attach_adapter, describe_trainable, load_adapter
from mmlearn.models.loss import causal_lm_loss
from mmlearn.models.towers import describe_towers, parameter_groups
from mmlearn.models.vision_cache import check_vision_cache, install_vision_cache, refuse_sharded_strategy

log = logging.getLogger(__name__)


class VLMFineTuner(AnswerModule):
    def __init__(
        self,
        spec,
        task,
        *,
        adapter,
        quantization,
        towers,
        optimizer,
        scheduler,
        decoder,
        adapter_dir: str | None = None,
    ) -> None:
        super().__init__(task, decoder)
        self.spec = spec
        self.towers = towers
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        check_vision_cache(spec, towers)  # before loading: a refused cache costs no model load
        self.processor = spec.load_processor()
        base = spec.load_model(quantization=quantization)
        if adapter_dir is not None:
            self.model = load_adapter(base, adapter_dir)
        else:
            self.model = attach_adapter(base, spec, adapter, towers, quantized=quantization is not None)
        self.model.train()  # from_pretrained returns eval mode; LoRA dropout must be live in training
        self.vision_cache = install_vision_cache(self.model, spec, towers)  # None unless enabled
        # what the decoder reads (never this module): the same object evaluate.py and a server decode with
        self.decoding_context = DecodingContext(self.model, self.processor, spec.prompt, task)
        self.is_peft = adapter is not None or adapter_dir is not None
        self.strict_loading = False  # checkpoints hold only the trainable weights
        log.info("%s (%s)", describe_trainable(self.model), describe_towers(self.model, spec))

    def setup(self, stage: str) -> None:
        if self.vision_cache is not None:
            refuse_sharded_strategy(self.trainer.strategy)

    def on_train_epoch_end(self) -> None:
        if self.vision_cache is not None:
            log.info("epoch %d: %s", self.current_epoch, self.vision_cache.describe())

    def training_step(self, batch, batch_idx):
        inputs = dict(batch["inputs"])
        labels = inputs.pop("labels")
        loss = causal_lm_loss(self.model(**inputs).logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(parameter_groups(self.model, self.spec, self.towers))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, num_training_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def save_trained(self, directory) -> None:
        """PEFT adapter format (or the full model for a full fine-tune), plus the processor."""
        self.model.save_pretrained(directory)
        self.processor.save_pretrained(directory)
