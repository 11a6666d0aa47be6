"""mmlearn's endpoints as a LitServe spec (LitServe's mechanism for routes of one's own, as its OpenAISpec
is): /v1/classify, /v1/chat/completions and /v1/models read and check the request in the HTTP process,
then queue it to the one ServedModel worker, so that requests of every endpoint batch together."""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import Request
from fastapi.responses import JSONResponse
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem

from mmlearn.serving.requests import (
    Limits,
    RequestError,
    body_too_large,
    chat_item,
    classify_items,
    parse_json,
)


def error_response(err: RequestError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


class ServingSpec(LitSpec):
    """`events`: mmlearn.serving.server.Events, shared with the worker and the SIGTERM handler."""

    def __init__(self, limits: Limits, image_file_root: str | None, events) -> None:
        super().__init__()
        self.api_path = "/v1/classify"
        self.limits = limits
        self.image_file_root = image_file_root
        self.events = events
        self.add_endpoint("/v1/classify", self.classify, ["POST"])
        self.add_endpoint("/v1/chat/completions", self.chat_completions, ["POST"])
        self.add_endpoint("/v1/models", self.models, ["GET"])

    def decode_request(self, request, context_kwargs=None):
        return request

    def encode_response(self, output, context_kwargs=None):
        return output

    async def classify(self, request: Request) -> JSONResponse:
        """One item object, or a list of them: per item its labels, scores, raw output and parse_ok."""
        try:
            self._check_open()
            items, single = classify_items(parse_json(await self._body(request)), self.limits)
            records = await self._submit({"kind": "classify", "items": items})
        except RequestError as err:
            return error_response(err)
        answers = [answer(r) for r in records]
        return JSONResponse(answers[0] if single else answers)

    async def chat_completions(self, request: Request) -> JSONResponse:
        """The OpenAI chat format; the reply's content is the model's raw answer."""
        try:
            self._check_open()
            item, model = chat_item(parse_json(await self._body(request)), self.image_file_root)
            (record,) = await self._submit({"kind": "chat", "items": [item], "model": model})
        except RequestError as err:
            return error_response(err)
        return JSONResponse(chat_completion(model, record))

    async def models(self, request: Request) -> JSONResponse:
        """The served run in OpenAI's model list: its name, task, labels and decoder."""
        try:
            self._check_open()
            info = await self._submit({"kind": "describe"})
        except RequestError as err:
            return error_response(err)
        return JSONResponse({"object": "list", "data": [{"object": "model", "owned_by": "mmlearn", **info}]})

    def _check_open(self) -> None:
        if self.events.draining.is_set():
            raise RequestError(503, "server", "shutting down: not taking new requests", "draining")
        if not self.events.loaded.is_set():
            raise RequestError(503, "model", "still loading: retry when /health answers 200", "loading")

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise body_too_large(int(declared), self.limits)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise body_too_large(size, self.limits)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _submit(self, payload: dict):
        """Queue `payload` to the worker (as LitServe's own handlers do) and wait for its answer."""
        uid = str(uuid.uuid4())
        event = asyncio.Event()
        self.response_buffer[uid] = ResponseBufferItem(event=event)
        self.request_queue.put((self.response_queue_id, uid, time.monotonic(), payload))
        await event.wait()
        response, status = self.response_buffer.pop(uid).response
        if status != LitAPIStatus.OK or not isinstance(response, dict):
            code = getattr(response, "status_code", 500)
            raise RequestError(code, "body", "the request failed in the model worker", "worker_error")
        if "error" in response:
            raise RequestError.from_fields(response["error"])
        return response["result"]


def answer(record: dict) -> dict:
    """A prediction record as /v1/classify answers it: `labels` (the parsed answer: labels, the option
    letter of a multiple-choice question, the caption) and `scores` ({label: p}, or null for decoders
    that compute none) next to the record's own fields."""
    return {
        "id": record["id"],
        "labels": record["parsed"],
        "scores": record.get("scores"),
        "output": record["output"],
        "parsed": record["parsed"],
        "parse_ok": record["parse_ok"],
    }


def chat_completion(model: str, record: dict) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": record["output"]},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "mmlearn": answer(record),
    }
