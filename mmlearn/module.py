"""The LightningModule: a HF vision-language model with its adapter, trained on answer tokens and
validated by generating answers and scoring them with the task metrics."""

from __future__ import annotations

import logging

import lightning as L

from mmlearn.decoding.context import DecodingContext
from mmlearn.decoding.records import prediction_record
from mmlearn.models.adapters import attach_adapter, describe_trainable, load_adapter
from mmlearn.models.loss import causal_lm_loss
from mmlearn.models.towers import describe_towers, parameter_groups
from mmlearn.models.vision_cache import check_vision_cache, install_vision_cache, refuse_sharded_strategy

log = logging.getLogger(__name__)


class VLMFineTuner(L.LightningModule):
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
        super().__init__()
        self.spec = spec
        self.task = task
        self.towers = towers
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        decoder.check(task)
        self.decoder = decoder  # how answers are read, in validation, test and evaluate.py alike
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
        self.val_metrics = task.build_metrics()
        self.test_metrics = task.build_metrics()
        log.info("%s (%s)", describe_trainable(self.model), describe_towers(self.model, spec))

    def setup(self, stage: str) -> None:
        if self.vision_cache is not None:
            refuse_sharded_strategy(self.trainer.strategy)

    def on_train_epoch_end(self) -> None:
        if self.vision_cache is not None:
            log.info("epoch %d: %s", self.current_epoch, self.vision_cache.describe())

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        """Only the model inputs travel; the samples stay on the host for parsing and scoring. Lightning's
        move is `non_blocking` on CUDA, which overlaps the copy with compute for pinned batches
        (`data.pin_memory`)."""
        inputs = super().transfer_batch_to_device(batch["inputs"], device, dataloader_idx)
        return {**batch, "inputs": inputs}

    def training_step(self, batch, batch_idx):
        inputs = dict(batch["inputs"])
        labels = inputs.pop("labels")
        loss = causal_lm_loss(self.model(**inputs).logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def _evaluate_batch(self, batch, metrics) -> list[dict]:
        decoded = self.decoder.decode(self.decoding_context, batch)
        samples = batch["samples"]
        metrics.update([d.parsed for d in decoded], samples)
        return [prediction_record(self.task, batch, i, d) for i, d in enumerate(decoded)]

    def predict_step(self, batch, batch_idx):
        """Answers to unlabelled samples: the records carry no gold labels and feed no metrics."""
        decoded = self.decoder.decode(self.decoding_context, batch)
        return [prediction_record(self.task, batch, i, d, labelled=False) for i, d in enumerate(decoded)]

    def validation_step(self, batch, batch_idx):
        return self._evaluate_batch(batch, self.val_metrics)

    def test_step(self, batch, batch_idx):
        return self._evaluate_batch(batch, self.test_metrics)

    def _log_metrics(self, stage: str, metrics) -> None:
        values = metrics.compute()
        metrics.reset()
        headline = values.pop(self.task.headline)
        self.log(f"{stage}/{self.task.headline}", headline, prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})

    def on_validation_epoch_end(self):
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self):
        self._log_metrics("test", self.test_metrics)

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
