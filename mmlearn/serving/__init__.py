"""Serving a trained run (or a base model zero-shot) over HTTP with LitServe: `/v1/classify`,
`/v1/chat/completions` (OpenAI's format), `/v1/models`, `/health` and a web page at `/`, with dynamic
batching into the decoder `evaluate.py` uses (mmlearn.inference). Entry point: serve.py."""

from mmlearn.serving.server import ServeSettings, build_server, serve

__all__ = ["ServeSettings", "build_server", "serve"]
