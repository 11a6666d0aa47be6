"""What backend=openai asks of an endpoint: the local prompt as chat messages, decoding=constrained as
structured output over the valid answers (OpenAI's response_format or vLLM's guided_choice), free
generation where the endpoint has neither, decoding=score refused by name; Retry-After as seconds or
an HTTP date."""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from tests.backend_server import ChatServer


def _backend(cache_dir, decoding, **changes):
    from mmlearn.backends import OpenAIBackend

    settings = dict(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None, concurrency=2, timeout_s=10,
        max_retries=0, backoff_s=0.01, temperature=0, max_tokens=16, structured_output="openai",
        prices=None, max_cost_usd=None, cache_dir=str(cache_dir), decoding=decoding,
    )  # fmt: skip
    return OpenAIBackend(**{**settings, **changes})


def _context(task, system=None):
    from mmlearn.decoding import DecodingContext

    return DecodingContext(None, None, SimpleNamespace(system=system), task)


def _batch(n, labels):
    image = Image.new("RGB", (4, 4), (200, 10, 10))
    return {
        "samples": [SimpleNamespace(id=f"s{i}", labels=labels) for i in range(n)],
        "prompts": [f"query {i}" for i in range(n)],
        "images": [[image]] * n,
        "shots": None,
    }


def test_messages_are_the_local_prompt_with_its_turns_and_pixels():
    from mmlearn.backends.messages import chat_messages

    red, blue = Image.new("RGB", (3, 2), (255, 0, 0)), Image.new("RGB", (2, 2), (0, 0, 255))
    messages = chat_messages("be brief", "what is it?", [blue], shots=[("and this?", [red], "red")])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "red" and messages[0]["content"] == "be brief"
    query = messages[3]["content"]
    assert [p["type"] for p in query] == ["image_url", "text"] and query[1]["text"] == "what is it?"
    encoded = query[0]["image_url"]["url"].split(",", 1)
    assert encoded[0] == "data:image/png;base64"
    assert Image.open(io.BytesIO(base64.b64decode(encoded[1]))).tobytes() == blue.tobytes()
    assert chat_messages(None, "x", [])[0]["role"] == "user"  # no system prompt, no system turn


def test_constrained_is_openai_structured_output(tmp_path):
    from mmlearn.decoding import ConstrainedDecoder
    from mmlearn.tasks import MultiLabelTask

    task = MultiLabelTask(["red", "blue"], "Which colours?")
    answers = [a for a, _ in task.candidates(16)]
    reply = lambda messages, body: (json.dumps({"answer": '["red"]'}), {})  # noqa: E731
    with ChatServer(reply) as server:
        backend = _backend(tmp_path, ConstrainedDecoder(max_candidates=16), base_url=server.url)
        backend.check(task)
        decoded = backend.decode(_context(task), _batch(3, ("red",)))
    schema = server.bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == answers and "guided_choice" not in server.bodies[0]
    assert [(d.output, d.parsed.labels) for d in decoded] == [('["red"]', ("red",))] * 3
    assert decoded[0].reply == json.dumps({"answer": '["red"]'})  # kept for the predictions


@pytest.mark.parametrize(
    ("dialect", "field", "payload"),
    [("vllm", "structured_outputs", {"choice": ["yes", "no"]}), ("guided", "guided_choice", ["yes", "no"])],
)
def test_constrained_is_vllm_structured_outputs(tmp_path, dialect, field, payload):
    from mmlearn.decoding import ConstrainedDecoder
    from mmlearn.tasks import MultiClassTask

    task = MultiClassTask(["yes", "no"], "Yes or no?")
    with ChatServer(lambda m, b: ("no", {})) as server:
        backend = _backend(tmp_path, ConstrainedDecoder(max_candidates=16), base_url=server.url)
        backend = replace(backend, structured_output=dialect)
        decoded = backend.decode(_context(task), _batch(2, ("no",)))
    assert server.bodies[0][field] == payload and "response_format" not in server.bodies[0]
    assert all(d.parsed.ok and d.output == "no" for d in decoded)


def test_without_structured_output_constrained_falls_back_to_free_generation(tmp_path, caplog):
    from mmlearn.decoding import ConstrainedDecoder
    from mmlearn.tasks import MultiClassTask

    task = MultiClassTask(["yes", "no"], "Yes or no?")
    with ChatServer(lambda m, b: ("maybe", {})) as server:
        backend = _backend(tmp_path, ConstrainedDecoder(max_candidates=16), base_url=server.url)
        backend = replace(backend, structured_output="none")
        with caplog.at_level(logging.WARNING):
            backend.check(task)
        decoded = backend.decode(_context(task), _batch(1, ("no",)))
    assert "falls back" not in caplog.text and "asked for free generation" in caplog.text
    assert set(server.bodies[0]) == {"model", "messages", "temperature", "max_tokens"}
    assert not decoded[0].parsed.ok  # counted as a parse failure, as decoding=generate would


def test_score_is_refused_by_name(tmp_path):
    from mmlearn.decoding import ScoreDecoder
    from mmlearn.tasks import MultiClassTask

    score = ScoreDecoder(
        normalize="sum", likelihood="constrained", tokens_per_pass=64, segment_tokens=None,
        rows_per_batch=8, max_candidates=16, threshold=0.5, thresholds=None, share_prompt=True,
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"decoding=score is not available with backend=openai.*log-probability"
    ):
        _backend(tmp_path, score).check(MultiClassTask(["yes", "no"], "?"))


def test_retry_after_reads_seconds_and_dates():
    import email.utils
    import time

    from mmlearn.backends.http import retry_after

    assert retry_after(httpx.Response(429, headers={"Retry-After": "2.5"})) == 2.5
    assert retry_after(httpx.Response(429)) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(httpx.Response(429, headers={"Retry-After": later})) <= 30


def test_item_messages_send_the_sample_bare():
    """backend.messages=item (a server that applies the run's prompt, serve.py): the sample's own text
    and image in one user message; in-context examples are refused by name."""
    from mmlearn.backends.messages import item_messages

    image = Image.new("RGB", (2, 2))
    batch = {
        "samples": [SimpleNamespace(id="a", text="help!", choices=())],
        "images": [[image]],
        "shots": None,
    }
    (conversation,) = item_messages(batch)
    assert [p["type"] for p in conversation[0]["content"]] == ["image_url", "text"]
    assert conversation[0]["content"][1]["text"] == "help!" and len(conversation) == 1
    with pytest.raises(ValueError, match=r"in-context examples need backend\.messages=prompt"):
        item_messages({**batch, "shots": [[("q", [], "a")]]})
