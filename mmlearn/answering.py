"""What every model side evaluates with: validation, test and predict steps that read answers through a
decoder (mmlearn/decoding/), score them with the task's metrics and hand the prediction records to the
writer. A VLM being fine-tuned (mmlearn/module.py) and a model behind an HTTP endpoint
(mmlearn/backends/) are both an AnswerModule; they differ in what their decoder talks to."""

from __future__ import annotations

import lightning as L

from mmlearn.decoding.records import prediction_record


class AnswerModule(L.LightningModule):
    """`task`: what answers mean; `decoder`: how they are read (checked against the task here, once).
    A subclass sets `decoding_context` (mmlearn/decoding/context.py), `spec` and `processor`."""

    def __init__(self, task, decoder) -> None:
        super().__init__()
        decoder.check(task)
        self.task = task
        self.decoder = decoder  # how answers are read, in validation, test and evaluate.py alike
        self.val_metrics = task.build_metrics()
        self.test_metrics = task.build_metrics()

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        """Only the model inputs travel; the samples stay on the host for parsing and scoring. Lightning's
        move is `non_blocking` on CUDA, which overlaps the copy with compute for pinned batches
        (`data.pin_memory`)."""
        inputs = super().transfer_batch_to_device(batch["inputs"], device, dataloader_idx)
        return {**batch, "inputs": inputs}

    def _evaluate_batch(self, batch, metrics) -> list[dict]:
        decoded = self.decoder.decode(self.decoding_context, batch)
        metrics.update([d.parsed for d in decoded], batch["samples"])
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
