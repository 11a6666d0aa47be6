"""Answers already paid for, on disk: one JSON file per request, keyed by (endpoint, model, messages,
parameters) and written as soon as the answer arrives, so a re-run costs nothing and an interrupted run
resumes without repeating a request. The API key is no part of the key or of the files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mmlearn.io import write_atomic


def request_key(endpoint: str, model: str, messages: list[dict], params: dict) -> str:
    payload = {"endpoint": endpoint.rstrip("/"), "model": model, "messages": messages, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ResponseCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def put(self, key: str, answer: dict) -> None:
        write_atomic(self._path(key), json.dumps(answer, sort_keys=True))
