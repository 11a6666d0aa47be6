"""The evaluation's LightningModule for an endpoint: VLMFineTuner's test, validation and predict steps
(the same metrics, the same prediction records) with no model. Only the model config's processor is
loaded, for the prompt format the collator renders and the answer budget; no weight is read."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmlearn.decoding.context import DecodingContext
from mmlearn.decoding.records import prediction_record
from mmlearn.module import VLMFineTuner


def uses_endpoint(config: DictConfig) -> bool:
    """Whether `backend=` names an endpoint (backend=local, and runs recorded before backends, do not)."""
    return OmegaConf.select(config, "backend._target_") is not None


class EndpointModule(VLMFineTuner):
    def __init__(self, spec, task, decoder, processor) -> None:
        L.LightningModule.__init__(self)  # VLMFineTuner's own __init__ loads the model
        self.spec = spec
        self.task = task
        decoder.check(task)
        self.decoder = decoder
        self.processor = processor
        self.model = None
        self.vision_cache = None
        self.is_peft = False
        self.decoding_context = DecodingContext(None, processor, spec.prompt, task)
        self.val_metrics = task.build_metrics()
        self.test_metrics = task.build_metrics()

    def _records(self, batch, labelled: bool) -> tuple[list, list[dict]]:
        decoded = self.decoder.decode(self.decoding_context, batch)
        rows = []
        for i, answer in enumerate(decoded):
            row = prediction_record(self.task, batch, i, answer, labelled=labelled)
            row["usage"], row["cached"] = answer.usage, answer.cached
            row |= {k: v for k, v in (("error", answer.error), ("reply", answer.reply)) if v is not None}
            rows.append(row)
        return decoded, rows

    def _evaluate_batch(self, batch, metrics) -> list[dict]:
        decoded, rows = self._records(batch, labelled=True)
        metrics.update([d.parsed for d in decoded], batch["samples"])
        return rows

    def predict_step(self, batch, batch_idx):
        return self._records(batch, labelled=False)[1]

    def usage_metrics(self) -> dict[str, float]:
        return self.decoder.usage_metrics(self.decoding_context)


def build_endpoint_module(config: DictConfig, task, decoder) -> EndpointModule:
    """`config.backend` built around the decoder `decoding=` chose; the model config gives the processor
    and prompt format (a run's own, with run_dir)."""
    spec = instantiate(config.model, _convert_="all")
    backend = instantiate(config.backend, _convert_="all", _partial_=True)(decoding=decoder)
    return EndpointModule(spec, task, backend, spec.load_processor())


def usage_metrics(module) -> dict[str, float]:
    """`usage/*` of an endpoint evaluation (none for a local model)."""
    return module.usage_metrics() if isinstance(module, EndpointModule) else {}
