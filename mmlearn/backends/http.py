"""One chat-completions request with the retry rules of a paid endpoint: 429, 5xx, timeouts and dropped
connections are retried with exponential backoff and jitter (a `Retry-After` header is honoured); any
other 4xx is the request's own fault and stops at once; after `max_retries` the run stops, naming the
sample and the last error. A 200 whose body is not a chat completion is an answer that cannot be read:
it comes back as an empty reply with the reason, and the task's parser counts it as a parse failure."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


class EndpointError(RuntimeError):
    """The endpoint refused a request, or did not answer it within the retries."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff_s: float  # the first wait; doubled on every retry, times a random factor in [0.5, 1.5)
    timeout_s: float

    def backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF_S, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.5)


def retry_after(response: httpx.Response) -> float | None:
    """The wait a `Retry-After` header asks for: seconds, or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when is not None else None


async def post_chat(
    client: httpx.AsyncClient, url: str, body: dict, headers: dict, sample_id, policy
) -> dict:
    """The parsed reply of one request: `{"reply", "usage", "finish_reason", "malformed"}`."""
    last, wait = None, 0.0
    for attempt in range(policy.max_retries + 1):
        if attempt:
            log.warning(
                "sample %s: %s; retry %d of %d in %.1fs", sample_id, last, attempt, policy.max_retries, wait
            )
            await asyncio.sleep(wait)
        try:
            response = await client.post(url, json=body, headers=headers, timeout=policy.timeout_s)
        except httpx.TimeoutException as err:
            last, wait = f"no answer within backend.timeout_s={policy.timeout_s} ({type(err).__name__})", None
        except httpx.TransportError as err:
            last, wait = f"connection failed ({type(err).__name__}: {err})", None
        else:
            status = response.status_code
            if status == 200:
                return read_completion(response.text)
            last, wait = f"HTTP {status}: {response.text[:300]}", retry_after(response)
            if status != 429 and status < 500:
                raise EndpointError(f"sample {sample_id}: {url} answered {last} (a {status} is not retried)")
        wait = policy.backoff(attempt) if wait is None else wait
    raise EndpointError(
        f"sample {sample_id}: no answer from {url} after {policy.max_retries + 1} attempts "
        f"(backend.max_retries={policy.max_retries}); last error: {last}"
    )


def read_completion(text: str) -> dict:
    """The first choice's text and the usage, or an empty reply saying why the body could not be read."""
    try:
        body = json.loads(text)
        choice = body["choices"][0]
        reply = choice["message"]["content"]
        if not isinstance(reply, str):
            raise TypeError(f"message.content is {type(reply).__name__}")
    except (ValueError, KeyError, IndexError, TypeError) as err:
        return {
            "reply": "",
            "usage": None,
            "finish_reason": None,
            "malformed": f"{type(err).__name__}: {err}",
        }
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    return {"reply": reply, "usage": usage, "finish_reason": choice.get("finish_reason"), "malformed": None}
