"""`serve.py`: the LitServer around one ServedModel, bound to conf/serve.yaml's host and port.

LitServe gives the dynamic batching, the inference worker processes, `/health` (200 once the model is
loaded: ServedModel.health) and the API-key hook (ServedModel.authorize on every route it registers);
mmlearn's routes come from ServingSpec, the web page is a route on LitServe's FastAPI app, and SIGTERM
drains: new requests get 503, in-flight ones finish (up to `drain_timeout`), then LitServe shuts down."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmlearn.serving.requests import Limits, RequestError

log = logging.getLogger(__name__)
HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # what LitServe binds


@dataclass(frozen=True)
class ServeSettings:
    """conf/serve.yaml's serving keys (their one home); checked here, never re-defaulted."""

    host: str
    port: int
    max_batch_size: int
    batch_timeout: float
    workers: int
    accelerator: str
    request_timeout: float
    drain_timeout: float
    api_key_env: str | None
    image_file_root: str | None
    limits: Limits

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ServeSettings:
        keys = [k for k in cls.__dataclass_fields__ if k != "limits"]
        return cls(**{k: cfg[k] for k in keys}, limits=instantiate(cfg.limits))

    def __post_init__(self) -> None:
        if self.host not in HOSTS:
            raise ValueError(f"host={self.host}: LitServe binds one of {', '.join(HOSTS)}")
        if not 1024 <= int(self.port) <= 65535:
            raise ValueError(f"port={self.port}: choose a port from 1024 to 65535")
        for key in ("max_batch_size", "workers"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: must be at least 1")
        for key in ("batch_timeout", "request_timeout", "drain_timeout"):
            if float(getattr(self, key)) < 0:
                raise ValueError(f"{key}={getattr(self, key)}: must be >= 0 seconds")


class Events:
    """Shared by the main process (SIGTERM), LitServe's HTTP processes (forked) and the inference
    workers (spawned, hence the spawn context): the model is loaded, failed to load, the server drains."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.loaded = context.Event()
        self.failed = context.Event()
        self.draining = context.Event()


def check_servable(cfg: DictConfig) -> None:
    if cfg.shots or cfg.shots_per_class:
        raise ValueError(
            "serve.py answers without in-context examples: leave shots and shots_per_class unset"
        )


def build_server(cfg: DictConfig, overrides: Sequence[str]):
    """(LitServer, ServedModel, draining event) for the composed serve config."""
    import litserve as ls

    from mmlearn.serving.api import ServedModel
    from mmlearn.serving.page import add_page
    from mmlearn.serving.spec import ServingSpec

    check_servable(cfg)
    settings = ServeSettings.from_config(cfg)
    events = Events()
    config = OmegaConf.to_container(cfg, resolve=True)  # ${hydra:...} resolves only in this process
    spec = ServingSpec(settings.limits, settings.image_file_root, events)
    api = ServedModel(config, list(overrides), settings, spec, events)
    server = ls.LitServer(
        api,
        accelerator=settings.accelerator,
        workers_per_device=settings.workers,
        timeout=settings.request_timeout,
        track_requests=True,  # counts in-flight requests: what SIGTERM waits for
        model_metadata={"run_dir": cfg.run_dir},
        disable_openapi_url=True,  # its /docs would describe raw Request bodies, and open without the key
    )
    add_page(server.app)
    server.app.add_exception_handler(StarletteHTTPException, _json_error)
    return server, settings, events


async def _json_error(request, exc) -> JSONResponse:
    """Every refusal in one shape: a detail that is already an error body (authorize's 401) as it is,
    anything else (404, LitServe's own) wrapped in it."""
    detail = exc.detail
    if not (isinstance(detail, dict) and "error" in detail):
        detail = RequestError(exc.status_code, request.url.path, str(detail), "http_error").body()
    return JSONResponse(detail, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def serve(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Run until SIGTERM or Ctrl-C; a model that fails to load stops the server with its error."""
    server, settings, events = build_server(cfg, overrides)
    previous = signal.signal(
        signal.SIGTERM, _drain_on_sigterm(server, events.draining, settings.drain_timeout)
    )
    threading.Thread(target=_stop_on_failure, args=(events,), name="mmlearn-watch", daemon=True).start()
    log.info("serving on http://%s:%s (API key %s)", settings.host, settings.port, _key_state(settings))
    try:
        server.run(
            host=settings.host,
            port=settings.port,
            generate_client_file=False,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        for child in multiprocessing.active_children():  # a worker still loading when stopped early
            child.terminate()
    if events.failed.is_set():
        raise RuntimeError("the model could not be loaded (its error is logged above)")


def _key_state(settings: ServeSettings) -> str:
    return (
        f"required: {settings.api_key_env} is set"
        if os.environ.get(settings.api_key_env or "")
        else "not required"
    )


def _drain_on_sigterm(server, draining, timeout: float):
    def handler(signum, frame) -> None:
        if draining.is_set():
            return
        draining.set()
        deadline = time.monotonic() + float(timeout)
        log.info("SIGTERM: draining %s in-flight requests", server.active_requests or 0)
        while (server.active_requests or 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.active_requests:
            log.warning(
                "drain_timeout=%ss passed with %s requests in flight", timeout, server.active_requests
            )
        raise KeyboardInterrupt  # LitServe's own graceful shutdown

    return handler


def _stop_on_failure(events: Events) -> None:
    while not events.failed.wait(1.0):
        if events.loaded.is_set():
            return
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["RequestError", "ServeSettings", "build_server", "serve"]
