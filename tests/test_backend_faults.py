"""backend=openai against a loopback server that fails on a schedule: 429s with Retry-After, 500s,
timeouts and malformed bodies are survived with the right answers (a malformed body is a parse failure,
never a crash); other 4xx and exhausted retries stop naming the sample; an interrupted run resumes
without repeating an answered request; the cost budget stops before it is exceeded; requests are
concurrent. No model weight is loaded (ModelSpec.load_model raises)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.backend_server import ChatServer, hf_conversation, last_user_text
from tests.conftest import REPO, compose, split_metrics

DEMO = ["data.prepare.splits={train: 16, val: 8, test: 8}"]


def _pixels(image) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def gold(demo_dir, tiny_qwen2vl):
    """Each test sample's training target, keyed by (prompt, image pixels): what a perfect endpoint answers."""
    from hydra.utils import instantiate

    from mmlearn.data.images import load_rgb

    datamodule = instantiate(compose([f"data.root={demo_dir}", *DEMO], "evaluate").data, _convert_="all")
    samples = datamodule.examples("test")
    task = datamodule.task
    return {(task.prompt(s), _pixels(load_rgb(s.image_path))): task.answer(s) for s in samples}, samples


def perfect(answers):
    def answer(messages, body):
        _, images = hf_conversation(messages)
        return answers[(last_user_text(messages), _pixels(images[-1]))], {
            "prompt_tokens": 100,
            "completion_tokens": 5,
        }

    return answer


def _overrides(demo_dir, server, tmp_path, *extra):
    return [
        f"data.root={demo_dir}",
        *DEMO,
        "backend=openai",
        f"backend.base_url={server.url}",
        "backend.model=perfect",
        "backend.api_key_env=null",
        f"backend.cache_dir={tmp_path / 'cache'}",
        "backend.backoff_s=0.01",
        *extra,
    ]


def _evaluate(overrides, out, monkeypatch):
    from mmlearn.evaluation import evaluate
    from mmlearn.models.spec import ModelSpec

    def no_weights(*args, **kwargs):
        raise AssertionError("backend=openai loaded model weights")

    monkeypatch.setattr(ModelSpec, "load_model", no_weights)
    cfg = compose([*overrides, f"paths.root_dir={out}", f"paths.output_dir={out}"], "evaluate")
    return evaluate(cfg, overrides)


def _rows(out):
    return [json.loads(line) for line in (out / "predictions" / "test.jsonl").read_text().splitlines()]


def test_faults_are_survived_with_the_right_answers(gold, demo_dir, tmp_path, monkeypatch):
    answers, samples = gold
    texts = [s.text for s in samples]
    faults = {texts[0]: ["429", "429"], texts[1]: ["500"], texts[2]: ["timeout"], texts[3]: ["malformed"]}
    with ChatServer(perfect(answers), faults=faults, timeout_sleep_s=1.5) as server:
        overrides = _overrides(
            demo_dir,
            server,
            tmp_path,
            "backend.timeout_s=0.5",
            "backend.max_retries=3",
            "backend.concurrency=4",
            "backend.prices={input: 1.0, output: 2.0}",
        )
        metrics = _evaluate(overrides, tmp_path / "run", monkeypatch)
        received = sum(server.received.values())
        # a re-run is answered from the cache (keyed by endpoint, model, messages, parameters): nothing sent
        rerun = _evaluate(overrides, tmp_path / "rerun", monkeypatch)
        assert sum(server.received.values()) == received
    rows = {r["id"]: r for r in _rows(tmp_path / "run")}
    malformed = rows[samples[3].id]
    assert not malformed["parse_ok"] and malformed["output"] == "" and "JSONDecodeError" in malformed["error"]
    others = [r for i, r in rows.items() if i != samples[3].id]
    assert len(others) == 7 and all(r["parse_ok"] and r["parsed"] == r["gold"] for r in others)
    assert metrics["test/parse_failure_rate"] == pytest.approx(1 / 8)
    # attempts: the malformed body once (an answer), the 500 and the timeout twice, the two 429s thrice
    assert sorted(server.attempts.values()) == [1, 2, 2, 3]
    assert sum(server.received.values()) == 8 + 2 + 1 + 1  # retries of the 429s, the 500 and the timeout
    assert set(server.answered.values()) == {1} and len(server.answered) == 8
    # usage: 7 answers report 100 + 5 tokens; the malformed one is counted by its estimate
    assert metrics["usage/requests_sent"] == 8 and metrics["usage/estimated_answers"] == 1
    assert metrics["usage/output_tokens"] > 7 * 5 and metrics["usage/cost_usd"] > 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["usage/requests_sent"] == 8
    assert rerun["usage/cached_answers"] == 8 and rerun["usage/requests_sent"] == 0
    assert split_metrics(tmp_path / "rerun" / "metrics.json") == split_metrics(
        tmp_path / "run" / "metrics.json"
    )
    assert (
        rerun["usage/cost_usd"] == pytest.approx(metrics["usage/cost_usd"])
        and rerun["usage/cost_usd_sent"] == 0
    )


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (["400"], r"sample .*HTTP 400.*injected 400.*\(a 400 is not retried\)"),
        (["500"] * 5, r"sample .*after 3 attempts \(backend.max_retries=2\); last error: HTTP 500"),
    ],
)
def test_a_refused_request_stops_naming_the_sample(gold, demo_dir, tmp_path, monkeypatch, schedule, message):
    from mmlearn.backends.http import EndpointError

    answers, samples = gold
    with ChatServer(perfect(answers), faults={samples[5].text: schedule}) as server:
        overrides = _overrides(demo_dir, server, tmp_path, "backend.max_retries=2", "backend.concurrency=1")
        with pytest.raises(EndpointError, match=message) as err:
            _evaluate(overrides, tmp_path / "run", monkeypatch)
    assert str(samples[5].id) in str(err.value)
    assert server.attempts[samples[5].text] == len(schedule[:3])


def test_the_budget_stops_before_it_is_exceeded(gold, demo_dir, tmp_path, monkeypatch):
    """Each request is estimated at ~(prompt chars / 4 + 765 per image) input + max_tokens output tokens;
    at $1000 per 1M input tokens one request costs about $0.8, so $3 pays for three and stops at the fourth."""
    from mmlearn.backends import BudgetExceeded

    answers, _ = gold
    with ChatServer(perfect(answers)) as server:
        prices = "backend.prices={input: 1000.0, output: 0.0}"
        overrides = _overrides(demo_dir, server, tmp_path, prices, "backend.max_cost_usd=3.0")
        with pytest.raises(BudgetExceeded, match=r"max_cost_usd=3.0 would be exceeded.*on 3 answers.*sample"):
            _evaluate(overrides, tmp_path / "run", monkeypatch)
    assert sum(server.answered.values()) == 3


def test_a_killed_run_resumes_without_repeating_a_request(gold, demo_dir, tmp_path):
    """evaluate.py killed (SIGKILL) while its fifth request is in flight, then run again: every request
    is answered exactly once in total, and only the one that was cut off is sent twice."""
    answers, _ = gold
    hold = {"at": 5}
    with ChatServer(perfect(answers), schedule=lambda n: "hold" if n == hold["at"] else None) as server:
        overrides = _overrides(demo_dir, server, tmp_path, "backend.concurrency=1")
        command = [sys.executable, "evaluate.py", *overrides]
        killed = subprocess.Popen(
            [*command, f"hydra.run.dir={tmp_path / 'killed'}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 300
        while sum(server.received.values()) < 5 and killed.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert killed.poll() is None, killed.stdout.read().decode()[-3000:]
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        assert sum(server.answered.values()) == 4
        hold["at"] = None
        done = subprocess.run(
            [*command, f"hydra.run.dir={tmp_path / 'resumed'}"], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(server.answered) == 8 and set(server.answered.values()) == {1}
    assert sum(server.received.values()) == 9  # the held request, sent again after the kill
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["usage/cached_answers"] == 4 and metrics["usage/requests_sent"] == 4
    assert metrics["test/parse_failure_rate"] == 0


def test_requests_are_concurrent(gold, tmp_path):
    """At 250 ms per answer, 16 requests take >= 4 s one at a time and ~0.5 s eight at a time (plus the
    HTTP handling, which on a loaded 2-core machine is ~70 ms per request)."""
    figures = {}
    for concurrency in (1, 8):
        rate = _requests_per_second(concurrency, tmp_path / f"c{concurrency}", delay_s=0.25)
        figures[concurrency] = rate
    print(f"requests/s against the test server (250 ms per answer): {figures}")
    assert figures[8] > 2 * figures[1]


def _requests_per_second(concurrency, cache_dir, delay_s, n=16):
    from types import SimpleNamespace

    from PIL import Image

    from mmlearn.backends import OpenAIBackend
    from mmlearn.decoding import DecodingContext, GenerateDecoder
    from mmlearn.tasks import MultiClassTask

    task = MultiClassTask(["yes", "no"], "Answer yes or no.")
    backend = OpenAIBackend(
        base_url="",
        model="m",
        api_key_env=None,
        concurrency=concurrency,
        timeout_s=10,
        max_retries=0,
        backoff_s=0.1,
        temperature=0,
        max_tokens=4,
        structured_output="none",
        prices=None,
        max_cost_usd=None,
        cache_dir=str(cache_dir),
        decoding=GenerateDecoder(extra_new_tokens=0),
    )
    image = Image.new("RGB", (8, 8))
    batch = {
        "samples": [SimpleNamespace(id=str(i), labels=("yes",)) for i in range(n)],
        "prompts": [f"query {i}" for i in range(n)],
        "images": [[image]] * n,
        "shots": None,
    }
    with ChatServer(
        lambda m, b: ("yes", {"prompt_tokens": 1, "completion_tokens": 1}), delay_s=delay_s
    ) as server:
        from dataclasses import replace

        backend = replace(backend, base_url=server.url)
        context = DecodingContext(None, None, SimpleNamespace(system=None), task)
        start = time.perf_counter()
        decoded = backend.decode(context, batch)
        seconds = time.perf_counter() - start
    assert [d.output for d in decoded] == ["yes"] * n and sum(server.answered.values()) == n
    return n / seconds
