"""The LitServe API: one inference worker holds the run's Predictor (mmlearn.inference) and answers the
batches LitServe's dynamic batching groups (up to `max_batch_size` requests, waiting `batch_timeout`).

A batch mixes /v1/classify, /v1/chat/completions and /v1/models requests (mmlearn.serving.spec queues
them all here): their items go through one decoder call per `data.eval_batch_size` samples, as
`evaluate.py` batches a split. A request's own fault (an image that does not decode, a text over the
token limit) is answered for that request alone; the others in its batch are answered as usual."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import litserve as ls
from fastapi import Header, HTTPException

from mmlearn.serving.auth import check_bearer
from mmlearn.serving.requests import Limits, RequestError

log = logging.getLogger(__name__)
DESCRIBE = "describe"


@dataclass
class Job:
    """One queued request, decoded in the worker: its samples, or the error that answers it."""

    kind: str
    samples: list = field(default_factory=list)
    error: RequestError | None = None
    result: object = None


class ServedModel(ls.LitAPI):
    """`config`: the composed serve config, resolved (a plain dict: it travels to the worker process);
    `overrides`: the command line applied over a run's config, as `evaluate.py` applies it."""

    def __init__(self, config: dict, overrides: list[str], settings, spec, events) -> None:
        super().__init__(
            max_batch_size=settings.max_batch_size,
            batch_timeout=settings.batch_timeout,
            api_path="/v1/classify",
            spec=spec,
        )
        self.config = config
        self.overrides = list(overrides)
        self.limits: Limits = settings.limits
        self.api_key_env = settings.api_key_env
        self.events = events  # mmlearn.serving.server.Events
        self.predictor = None

    # -- in the worker ---------------------------------------------------------------------------------
    def setup(self, device) -> None:
        """The model loads in the background, so that /health answers 503 until it is ready."""
        self.device = device
        threading.Thread(target=self._load, name="mmlearn-load", daemon=True).start()

    def _load(self) -> None:
        try:
            from omegaconf import OmegaConf

            from mmlearn.inference import load_predictor

            predictor = load_predictor(OmegaConf.create(self.config), self.overrides)
            place(predictor.module, self.device)
            self.predictor = predictor
            log.info("serving %s on %s", predictor.name, self.device)
            self.events.loaded.set()
        except BaseException:
            log.exception("the model could not be loaded; the server stops")
            self.events.failed.set()

    def decode_request(self, request: dict, **kwargs) -> Job:
        kind = request["kind"]
        if not self.events.loaded.is_set():
            return Job(kind, error=RequestError(503, "model", "still loading", "loading"))
        if kind == DESCRIBE:
            return Job(kind)
        model = request.get("model")
        if model is not None and model != self.predictor.name:
            message = f"{model!r} is not served here; this server serves {self.predictor.name!r}"
            return Job(kind, error=RequestError(404, "model", message, "model_not_found"))
        try:
            return Job(kind, samples=[self._sample(item, i) for i, item in enumerate(request["items"])])
        except RequestError as err:
            return Job(kind, error=err)

    def _sample(self, item: dict, index: int):
        from mmlearn.inference import InputError, Item

        try:
            sample = self.predictor.sample(Item(**item), index)
        except InputError as err:
            raise RequestError(
                400, err.field, str(err).split(": ", 1)[-1], "invalid_input", pixel_limit(err, self.predictor)
            ) from err
        self._check_tokens(item)
        return sample

    def _check_tokens(self, item: dict) -> None:
        tokenizer = self.predictor.context.tokenizer
        for key in ("text", "context"):
            if item.get(key):
                count = len(tokenizer(item[key], add_special_tokens=False)["input_ids"])
                if count > self.limits.max_text_tokens:
                    raise RequestError(
                        400,
                        f"{item['name']}.{key}",
                        f"{count} tokens, over the limit of {self.limits.max_text_tokens}",
                        "too_many_tokens",
                        {"name": "limits.max_text_tokens", "value": self.limits.max_text_tokens},
                    )

    def predict(self, x, **kwargs):
        jobs = x if isinstance(x, list) else [x]  # max_batch_size=1: LitServe passes one request
        for job in jobs:
            if job.error is None and job.kind == DESCRIBE:
                job.result = self.predictor.describe()
        answering = [j for j in jobs if j.error is None and j.kind != DESCRIBE]
        try:
            self._answer(answering)
        except Exception:  # one request's sample broke the batch: answer each request alone
            log.exception("a batch of %d requests failed; answering them one by one", len(answering))
            for job in answering:
                self._answer_alone(job)
        return jobs if isinstance(x, list) else jobs[0]

    def _answer(self, jobs: list[Job]) -> None:
        samples = [s for job in jobs for s in job.samples]
        size = int(self.predictor.config.data.eval_batch_size)
        records = [
            r
            for start in range(0, len(samples), size)
            for r in self.predictor.answer(samples[start : start + size])
        ]
        for job in jobs:
            job.result, records = records[: len(job.samples)], records[len(job.samples) :]

    def _answer_alone(self, job: Job) -> None:
        try:
            self._answer([job])
        except Exception as err:
            log.exception("a request failed")
            job.error = RequestError(
                500, "body", f"the model failed on this request ({type(err).__name__})", "model_error"
            )

    def encode_response(self, output: Job, **kwargs) -> dict:
        if output.error is not None:
            return {"error": output.error.fields()}
        return {"result": output.result}

    # -- in the HTTP process ---------------------------------------------------------------------------
    def health(self) -> bool:
        return self.events.loaded.is_set() and not self.events.draining.is_set()

    def authorize(self, authorization: str | None = Header(default=None)) -> None:
        """LitServe's hook: a FastAPI dependency of every endpoint it registers."""
        try:
            check_bearer(authorization, self.api_key_env)
        except RequestError as err:
            raise HTTPException(
                err.status, detail=err.body(), headers={"WWW-Authenticate": "Bearer"}
            ) from None


def pixel_limit(err, predictor) -> dict | None:
    """The limit an image broke, when it is the pixel limit (data.max_image_pixels)."""
    if "max_image_pixels" not in str(err):
        return None
    return {"name": "data.max_image_pixels", "value": predictor.datamodule.inputs.images.max_pixels}


def place(module, device: str) -> None:
    """The model on LitServe's device; a 4-bit model stays where bitsandbytes put it."""
    if str(device) == "cpu" or getattr(module.model, "is_loaded_in_4bit", False):
        return
    module.to(device)
