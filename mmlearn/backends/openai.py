"""`backend=openai`: a decoder that talks HTTP. Each sample of a collated batch is rendered as the local
prompt is (mmlearn/backends/messages.py), sent to an OpenAI-compatible chat-completions endpoint (OpenAI,
a vLLM or SGLang server, mmlearn's serve.py) with `concurrency` requests in flight, and the reply is
read by the task's parser, so metrics, predictions and reports are those of the local path.

What is asked of the endpoint follows `decoding=`: generate is free generation up to the local budget;
constrained becomes the endpoint's structured output over the task's valid answers
(`backend.structured_output`); score needs candidate log-probabilities, which chat completions do not
return, and is refused by name."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import ClassVar

import httpx

from mmlearn.backends.cache import ResponseCache, request_key
from mmlearn.backends.http import RetryPolicy, post_chat
from mmlearn.backends.messages import batch_messages, item_messages, text_size
from mmlearn.backends.usage import BudgetExceeded, Usage
from mmlearn.decoding.base import Decoded, Decoder, require_closed_answers

log = logging.getLogger(__name__)

STRUCTURED = ("openai", "vllm", "guided", "none")
MESSAGES = ("prompt", "item")
SUPPORTED = ("generate", "constrained")


@dataclass(frozen=True)
class EndpointDecoded(Decoded):
    """An endpoint's answer: also its token usage, whether it came from the cache, and why a reply
    could not be read (a malformed body)."""

    usage: dict | None = None
    cached: bool = False
    error: str | None = None
    reply: str | None = None  # the raw reply, where the parser read the answer inside it

    def record_fields(self) -> dict:
        optional = {"error": self.error, "reply": self.reply}
        return {"usage": self.usage, "cached": self.cached} | {
            k: v for k, v in optional.items() if v is not None
        }


@dataclass(frozen=True)
class Request:
    index: int
    sample_id: str
    key: str
    messages: list = field(repr=False)
    estimate: tuple[int, int] = (0, 0)  # input, output tokens


@dataclass(frozen=True)
class OpenAIBackend(Decoder):
    """The keys of conf/backend/openai.yaml; `decoding` is the decoder `decoding=` chose, which says
    what to ask for (and the budget of free generation, `decoding.extra_new_tokens`)."""

    base_url: str
    model: str
    api_key_env: str | None  # the variable holding the key; the key itself is never in a file
    concurrency: int
    timeout_s: float
    max_retries: int
    backoff_s: float
    temperature: float
    max_tokens: int | None  # null: the task's longest answer + end token (+ extra_new_tokens), as local
    structured_output: str  # openai (response_format) | vllm (structured_outputs) | guided (old vLLM) | none
    prices: dict | None  # USD per 1M tokens: {input: ..., output: ...}
    max_cost_usd: float | None
    cache_dir: str
    messages: str = "prompt"  # prompt: the local prompt as chat turns | item: the sample bare (serve.py)
    decoding: Decoder | None = None
    image_tokens: ClassVar[int] = 765  # input tokens estimated per image (OpenAI's high-detail 1024px tile)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_retries < 0:
            raise ValueError("backend.concurrency must be >= 1 and backend.max_retries >= 0")
        if self.structured_output not in STRUCTURED:
            raise ValueError(
                f"backend.structured_output must be one of {STRUCTURED}, got {self.structured_output!r}"
            )
        if self.messages not in MESSAGES:
            raise ValueError(f"backend.messages must be one of {MESSAGES}, got {self.messages!r}")
        if self.max_cost_usd is not None and not self.prices:
            raise ValueError("backend.max_cost_usd needs backend.prices (USD per 1M input and output tokens)")
        if self.decoding is None:
            raise ValueError("OpenAIBackend needs decoding= (the decoder conf/decoding chose)")

    @property
    def name(self) -> str:  # what is decoded, as in the local path's reports
        return self.decoding.name

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def check(self, task) -> None:
        if self.decoding.name not in SUPPORTED:
            raise ValueError(
                f"decoding={self.decoding.name} is not available with backend=openai: it needs the "
                "log-probability of every candidate answer given the prompt, which a chat-completions "
                "endpoint does not return; use decoding=generate or decoding=constrained"
            )
        self.decoding.check(task)
        self.api_key()  # a missing key stops the run before any sample is read
        if self.decoding.name == "constrained" and self.structured_output == "none":
            log.warning(
                "decoding=constrained with backend.structured_output=none: %s is asked for free "
                "generation, its replies parsed as decoding=generate's (parse failures are possible)",
                self.base_url,
            )

    def api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(
                f"backend.api_key_env={self.api_key_env}: the environment variable {self.api_key_env} is "
                f"not set; export it with the key for {self.base_url}, or set backend.api_key_env=null "
                "for a server that takes no key (a local vLLM, serve.py)"
            )
        return key

    def budget_tokens(self, context) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        return context.answer_budget + getattr(self.decoding, "extra_new_tokens", 0)

    def answers(self, context) -> list[str]:
        candidates = require_closed_answers(self.decoding, context.task, self.decoding.max_candidates)
        return [answer for answer, _ in candidates]

    def params(self, context) -> dict:
        """The request's parameters besides model and messages (part of the cache key)."""
        params = {"temperature": self.temperature, "max_tokens": self.budget_tokens(context)}
        if self.decoding.name != "constrained" or self.structured_output == "none":
            return params
        answers = context.memo("endpoint_answers", lambda: self.answers(context))
        if self.structured_output == "vllm":
            return {**params, "structured_outputs": {"choice": answers}}
        if self.structured_output == "guided":  # vLLM before `structured_outputs`; later ones ignore it
            return {**params, "guided_choice": answers}
        schema = {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": answers}},
            "required": ["answer"],
            "additionalProperties": False,
        }
        format_ = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}
        return {**params, "response_format": format_}

    def answer_text(self, reply: str) -> str:
        """What the parser reads: the reply, or the answer inside OpenAI's structured-output object."""
        if self.decoding.name != "constrained" or self.structured_output != "openai":
            return reply
        try:
            answer = json.loads(reply)["answer"]
        except (ValueError, KeyError, TypeError):
            return reply
        return answer if isinstance(answer, str) else reply

    def session(self, context) -> Usage:
        return context.memo("endpoint_usage", lambda: Usage(self.prices, self.max_cost_usd))

    def estimate(self, messages: list[dict], max_tokens: int) -> tuple[int, int]:
        chars, images = text_size(messages)
        return math.ceil(chars / 4) + images * self.image_tokens, max_tokens

    def decode(self, context, batch: dict) -> list[Decoded]:
        usage, cache, params = self.session(context), ResponseCache(self.cache_dir), self.params(context)
        conversations = batch_messages(context, batch) if self.messages == "prompt" else item_messages(batch)
        requests = [
            Request(i, str(sample.id), request_key(self.base_url, self.model, m, params), m)
            for i, (sample, m) in enumerate(zip(batch["samples"], conversations, strict=True))
        ]
        answers = {r.index: cache.get(r.key) for r in requests}
        for answer in answers.values():
            if answer is not None:
                usage.add_cached(answer)
        todo = [
            Request(r.index, r.sample_id, r.key, r.messages, self.estimate(r.messages, params["max_tokens"]))
            for r in requests
            if answers[r.index] is None
        ]
        affordable, stop = usage.affordable(todo)
        fetched = asyncio.run(self.fetch(affordable, params, cache, usage)) if affordable else {}
        if stop is not None:
            raise stop
        return [
            self.decoded(
                context,
                fetched[r.index] if r.index in fetched else answers[r.index],
                sample,
                r.index not in fetched,
            )
            for r, sample in zip(requests, batch["samples"], strict=True)
        ]

    def decoded(self, context, answer: dict, sample, cached: bool) -> EndpointDecoded:
        text = self.answer_text(answer["reply"])
        return EndpointDecoded(
            text,
            context.task.parse(text, sample),
            usage=answer["usage"],
            cached=cached,
            error=answer["malformed"],
            reply=answer["reply"] if answer["reply"] != text else None,
        )

    async def fetch(self, requests: list[Request], params: dict, cache: ResponseCache, usage: Usage) -> dict:
        """The answers to `requests`, at most `concurrency` in flight; each cached as it arrives."""
        policy = RetryPolicy(self.max_retries, self.backoff_s, self.timeout_s)
        key = self.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limit = asyncio.Semaphore(self.concurrency)
        pool = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)

        async with httpx.AsyncClient(limits=pool) as client:

            async def one(request: Request) -> tuple[int, dict]:
                async with limit:
                    body = {"model": self.model, "messages": request.messages, **params}
                    answer = await post_chat(client, self.url, body, headers, request.sample_id, policy)
                if answer["malformed"]:
                    log.warning(
                        "sample %s: unreadable reply (%s): a parse failure",
                        request.sample_id,
                        answer["malformed"],
                    )
                answer["estimate"] = list(request.estimate)  # the tokens counted if it reports no usage
                cache.put(request.key, answer)
                usage.add_sent(answer, request.estimate)
                return request.index, answer

            return dict(await asyncio.gather(*(one(r) for r in requests)))

    def usage_metrics(self, context) -> dict[str, float]:
        return self.session(context).metrics()


__all__ = ["BudgetExceeded", "EndpointDecoded", "OpenAIBackend"]
