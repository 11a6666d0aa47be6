"""backend=openai against a loopback OpenAI-compatible server that holds the demo run's model in
process (the messages through the processor's chat template, greedy generate: what vLLM does): the same
predictions and metrics as `evaluate.py run_dir=<run>` in process. Both sides run in float64, where a
batch of left-padded prompts and one prompt at a time give the same greedy tokens. The API key is read
from the variable `backend.api_key_env` names and is in no file the evaluation writes, nor its log.
compare.py reports the API mode beside the local mode."""

from __future__ import annotations

import json

import pytest

from tests.backend_server import ChatServer, model_answer
from tests.conftest import run_script, split_metrics, train_demo_run

KEY_ENV = "MMLEARN_TEST_ENDPOINT_KEY"
SECRET = "sk-test-3f9c1e7a-never-in-a-file"
FIELDS = ("id", "output", "parsed", "parse_ok", "gold", "prompt_id")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_qwen2vl, demo_dir):
    return train_demo_run(tmp_path_factory, demo_dir)


@pytest.fixture(scope="module")
def served(run):
    """The run's model (adapter on its base, float64) behind a loopback chat-completions server."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mmlearn.evaluation import build_run_module, load_run_config

    config = OmegaConf.merge(load_run_config(run), {"model": {"torch_dtype": "float64"}})
    task = instantiate(config.data, _convert_="all").task
    module = build_run_module(run, config, task, instantiate(config.decoding)).eval()
    with ChatServer(model_answer(module.decoding_context)) as server:
        yield server


def _rows(directory):
    rows = [json.loads(line) for line in (directory / "predictions" / "test.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: r["id"])


def _api(served, tmp_path, *extra):
    return [
        "backend=openai",
        f"backend.base_url={served.url}",
        "backend.model=demo",
        f"backend.api_key_env={KEY_ENV}",
        f"backend.cache_dir={tmp_path / 'api-cache'}",
        *extra,
    ]


@pytest.fixture(scope="module")
def evaluations(run, served, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loopback")
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, SECRET)
    try:
        local = run_script(
            "evaluate.py", f"run_dir={run}", "model.torch_dtype=float64", f"hydra.run.dir={tmp / 'local'}"
        )
        api = run_script("evaluate.py", f"run_dir={run}", *_api(served, tmp), f"hydra.run.dir={tmp / 'api'}")
    finally:
        mp.undo()
    return tmp, local, api


def test_the_endpoint_gives_the_local_predictions_and_metrics(evaluations, served):
    tmp, _, _ = evaluations
    local, api = _rows(tmp / "local"), _rows(tmp / "api")
    assert len(local) == 8
    assert [{k: r.get(k) for k in FIELDS} for r in api] == [{k: r.get(k) for k in FIELDS} for r in local]
    assert split_metrics(tmp / "api" / "metrics.json") == split_metrics(tmp / "local" / "metrics.json")
    assert sum(not r["parse_ok"] for r in local) < 8 or len({r["output"] for r in local}) > 1  # not all alike
    metrics = json.loads((tmp / "api" / "metrics.json").read_text())
    assert metrics["usage/requests_sent"] == 8 and metrics["usage/input_tokens"] > 8 * 10
    assert all(r["usage"]["completion_tokens"] >= 1 and r["cached"] is False for r in api)
    assert {b["max_tokens"] for b in served.bodies} == {_local_budget(tmp / "local")}
    info = json.loads((tmp / "api" / "evaluation.json").read_text())
    assert info["model"] == "demo" and info["endpoint"] == served.url


def _local_budget(directory) -> int:
    """max_new_tokens of the local evaluation: the run's longest answer + end token + extra_new_tokens."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mmlearn.decoding import DecodingContext

    config = OmegaConf.load(directory / "config.yaml")
    spec = instantiate(config.model, _convert_="all")
    context = DecodingContext(
        None, spec.load_processor(), spec.prompt, instantiate(config.data, _convert_="all").task
    )
    return instantiate(config.decoding).max_new_tokens(context)


def test_the_key_comes_from_the_named_variable_and_is_in_no_file(evaluations, served):
    tmp, _, api = evaluations
    assert set(served.authorizations) == {f"Bearer {SECRET}"}
    files = [p for p in tmp.rglob("*") if p.is_file()]
    assert any(p.parent.parent.name == "api-cache" for p in files)  # the cache is among the files searched
    assert any(p.name == "config.yaml" for p in files) and any(p.suffix == ".log" for p in files)
    leaks = [p for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == [] and SECRET not in api.stdout + api.stderr
    assert KEY_ENV in (tmp / "api" / "config.yaml").read_text()  # the variable's name is recorded


def test_a_missing_key_stops_before_any_request(run, served, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    before = sum(served.received.values())
    out = run_script(
        "evaluate.py",
        f"run_dir={run}",
        *_api(served, tmp_path),
        f"hydra.run.dir={tmp_path / 'x'}",
        check=False,
    )
    assert out.returncode != 0 and f"environment variable {KEY_ENV} is not set" in out.stderr + out.stdout
    assert sum(served.received.values()) == before


def test_compare_reports_an_api_mode_beside_a_local_mode(run, served, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    backend = (
        f"{{option: openai, base_url: '{served.url}', model: demo, api_key_env: {KEY_ENV}, "
        f"cache_dir: '{tmp_path / 'c'}'}}"
    )
    run_script(
        "compare.py",
        "model.torch_dtype=float64",
        "~modes.zero_shot",
        "~modes.two_shot",
        f"modes.fine_tuned.run_dir={run}",
        f"+modes.endpoint={{run_dir: '{run}', backend: {backend}}}",
        "reference=fine_tuned",
        "bootstrap.samples=50",
        f"hydra.run.dir={tmp_path / 'cmp'}",
    )
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "| fine_tuned | qwen2vl_tiny |" in report and "| endpoint | demo |" in report
    table = json.loads((tmp_path / "cmp" / "report.json").read_text())["rows"]
    values = {(r["mode"], r["metric"]): r["value"] for r in table}
    assert {mode for mode, _ in values} == {"fine_tuned", "endpoint"}
    assert all(values[("endpoint", k)] == v for (mode, k), v in values.items() if mode == "fine_tuned")


def test_serve_py_gives_the_local_predictions(run, evaluations, tmp_path):
    """Against mmlearn's own serve.py holding the run (float64): `backend.messages=item` sends each
    sample bare, the server applies the run's prompt and decoder, and the predictions and metrics are
    those of `evaluate.py run_dir=<run>`."""
    pytest.importorskip("litserve")
    import urllib.request

    from mmlearn.serving.local import LocalServer

    tmp, _, _ = evaluations
    local = LocalServer([f"run_dir={run}", "model.torch_dtype=float64"], tmp_path / "serve.log")
    try:
        server = local.wait_ready()
        with urllib.request.urlopen(f"{server.url}/v1/models") as response:
            (served,) = json.loads(response.read())["data"]
        run_script(
            "evaluate.py",
            f"run_dir={run}",
            "backend=openai",
            f"backend.base_url={server.url}/v1",
            f"backend.model={served['id']}",
            "backend.api_key_env=null",
            "backend.messages=item",
            f"backend.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'served'}",
        )
    finally:
        local.stop()
    local_rows, served_rows = _rows(tmp / "local"), _rows(tmp_path / "served")
    assert [{k: r.get(k) for k in FIELDS} for r in served_rows] == [
        {k: r.get(k) for k in FIELDS} for r in local_rows
    ]
    assert split_metrics(tmp_path / "served" / "metrics.json") == split_metrics(
        tmp / "local" / "metrics.json"
    )
