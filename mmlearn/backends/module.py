"""The evaluation's LightningModule for an endpoint: an AnswerModule (the test, validation and predict
steps fine-tuning validates with: the same metrics, the same prediction records) with no model. Only
the model config's processor is loaded, for the prompt format the collator renders and the answer
budget; no weight is read."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmlearn.answering import AnswerModule
from mmlearn.decoding.context import DecodingContext


def uses_endpoint(config: DictConfig) -> bool:
    """Whether `backend=` names an endpoint (backend=local, and runs recorded before backends, do not)."""
    return OmegaConf.select(config, "backend._target_") is not None


class EndpointModule(AnswerModule):
    """The decoder talks to the endpoint; the context holds no model."""

    def __init__(self, spec, task, decoder, processor) -> None:
        super().__init__(task, decoder)
        self.spec = spec
        self.processor = processor
        self.model = None
        self.vision_cache = None
        self.is_peft = False
        self.decoding_context = DecodingContext(None, processor, spec.prompt, task)

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
