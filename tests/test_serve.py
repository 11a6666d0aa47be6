"""serve.py on a free loopback port, one server for the module (a 2-step demo run, decoding=score, an API
key set): /health is 503 until the model is loaded, /v1/classify answers the test split exactly as
evaluate.py's predictions/test.jsonl, the openai client gets an answer, every bad request gets its 4xx
and the server keeps answering, the key is enforced and never logged, the page works in headless
Chromium, and SIGTERM lets an in-flight request finish before the server exits."""

import base64
import csv
import http.client
import importlib.util
import io
import json
import re
import shutil
import signal
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from mmlearn.serving.local import LocalServer, health
from tests.conftest import REPO, run_script, train_demo_run

pytestmark = pytest.mark.slow
KEY = "test-key-5f0c9a"  # the server's MMLEARN_API_KEY
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_TEXT_TOKENS = 64
MAX_BODY = 400_000


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_qwen2vl, demo_dir):
    return train_demo_run(tmp_path_factory, demo_dir)


@pytest.fixture(scope="module")
def evaluated(run):
    run_script("evaluate.py", f"run_dir={run}", "decoding=score")
    (out,) = (run / "eval").glob("test-score-*")
    return [json.loads(line) for line in (out / "predictions" / "test.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    local = LocalServer(
        [
            f"run_dir={run}",
            "decoding=score",
            f"limits.max_text_tokens={MAX_TEXT_TOKENS}",
            f"limits.max_body_bytes={MAX_BODY}",
        ],
        log,
        env={"MMLEARN_API_KEY": KEY},
    )
    yield local.wait_ready(headers=AUTH)
    local.stop()


def call(server, path, body=None, headers=AUTH, raw: bytes | None = None):
    """(status, parsed JSON body)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"{server.url}{path}", data=data, headers={**headers})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _test_items(demo_dir):
    rows = list(csv.DictReader((demo_dir / "test.csv").open()))
    return [{"id": r["id"], "text": r["text"], "image": _b64(demo_dir / r["image_path"])} for r in rows]


def _still_healthy(server, demo_dir):
    assert health(server.url, AUTH) == 200
    status, answer = call(server, "/v1/classify", _test_items(demo_dir)[0])
    assert status == 200 and answer["parse_ok"] in (True, False), answer


def test_health_is_503_until_the_model_is_loaded(server):
    answered = [s for s in server.seen if s is not None]
    assert answered[-1] == 200 and 503 in answered and set(answered) == {503, 200}, server.seen


def test_classify_answers_the_test_split_as_evaluate_does(server, evaluated, demo_dir):
    status, answers = call(server, "/v1/classify", _test_items(demo_dir))
    assert status == 200 and len(answers) == len(evaluated) == 8
    for answer, row in zip(answers, evaluated, strict=True):
        assert answer["id"] == row["id"]
        assert (answer["output"], answer["parsed"], answer["parse_ok"]) == (
            row["output"],
            row["parsed"],
            row["parse_ok"],
        )
        assert answer["labels"] == row["parsed"]
        assert set(answer["scores"]) == set(row["scores"]) == {"red", "blue", "urgent", "question"}
        # float32, the same batch of 8 through the same kernels: equal up to the threads' reduction order
        assert answer["scores"] == pytest.approx(row["scores"], abs=1e-6)


def test_models_names_the_run(server, run):
    status, listing = call(server, "/v1/models")
    (model,) = listing["data"]
    assert status == 200 and model["task"] == "multilabel" and model["decoding"] == "score"
    assert model["labels"] == ["red", "blue", "urgent", "question"] and model["modality"] == "text_image"


def test_the_openai_client_gets_an_answer(server, demo_dir, evaluated):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    (model,) = client.models.list().data
    item = _test_items(demo_dir)[0]
    reply = client.chat.completions.create(
        model=model.id,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": item["text"]},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{item['image']}"}},
                ],
            }
        ],
    )
    assert reply.model == model.id and reply.choices[0].message.role == "assistant"
    assert (
        reply.choices[0].message.content == evaluated[0]["output"]
    )  # the task's prompt applied to the raw inputs
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="another", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()


def _png(size, mode="RGB") -> str:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def _chat(*parts):
    return {"model": "any", "messages": [{"role": "user", "content": list(parts)}]}


def _image_part(b64):
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}


BAD = {
    "malformed JSON": ("/v1/classify", b'{"text": "a", ', 400, "body", None),
    "missing text": ("/v1/classify", {"image": "IMAGE"}, 400, "body.text", None),
    "missing image": ("/v1/classify", {"text": "a"}, 400, "body.image", None),
    "undecodable image": (
        "/v1/classify",
        {"text": "a", "image": base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode()},
        400,
        "body.image",
        None,
    ),
    "non-image payload": (
        "/v1/classify",
        {"text": "a", "image": base64.b64encode(b"just some text").decode()},
        400,
        "body.image",
        None,
    ),
    "not base64": ("/v1/classify", {"text": "a", "image": "%%%"}, 400, "body.image", None),
    "body over the limit": (
        "/v1/classify",
        {"text": "a" * (MAX_BODY + 10)},
        413,
        "body",
        "limits.max_body_bytes",
    ),
    # a 1-bit 12000x12000 PNG is a few KB; decoded as RGB it would take 432 MB
    "decompression bomb": (
        "/v1/classify",
        {"text": "a", "image": _png((12000, 12000), "1")},
        400,
        "body.image",
        "data.max_image_pixels",
    ),
    "two images": (
        "/v1/chat/completions",
        _chat({"type": "text", "text": "a"}, _image_part("IMAGE"), _image_part("IMAGE")),
        400,
        "messages[0].content",
        "images per request",
    ),
    "a list of images": (
        "/v1/classify",
        {"text": "a", "image": ["IMAGE", "IMAGE"]},
        400,
        "body.image",
        "images per item",
    ),
    "text over the token limit": (
        "/v1/classify",
        {"text": "word " * 400, "image": "IMAGE"},
        400,
        "body.text",
        "limits.max_text_tokens",
    ),
    "too many items": (
        "/v1/classify",
        [{"text": "a"}] * 65,
        400,
        "body",
        "limits.max_items",
    ),
    "remote image url": (
        "/v1/chat/completions",
        _chat({"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/x.png"}}),
        400,
        "messages[0].content[0].image_url.url",
        "image_file_root",
    ),
    "file url without a root": (
        "/v1/chat/completions",
        _chat({"type": "image_url", "image_url": {"url": "file:///etc/hostname"}}),
        400,
        "messages[0].content[0].image_url.url",
        "image_file_root",
    ),
    "unknown field": ("/v1/classify", {"text": "a", "imag": "IMAGE"}, 400, "body.imag", None),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_each_bad_request_gets_its_4xx_and_the_server_keeps_answering(server, demo_dir, case):
    path, body, status, field, limit = BAD[case]
    image = _b64(demo_dir / "images" / "test_00000.png")
    if isinstance(body, bytes):
        got, answer = call(server, path, raw=body)
    else:
        got, answer = call(server, path, raw=json.dumps(body).replace("IMAGE", image).encode())
    error = answer["error"]
    assert (got, error["field"]) == (status, field), answer
    assert field in error["message"]
    if limit is not None:
        assert error["limit"]["name"] == limit and limit.split(".")[-1] in json.dumps(error)
    _still_healthy(server, demo_dir)


def test_the_api_key_is_enforced_and_never_logged(server, demo_dir):
    item = _test_items(demo_dir)[0]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        for path, body in (("/v1/classify", item), ("/v1/models", None), ("/health", None), ("/info", None)):
            status, answer = call(server, path, body, headers=headers)
            assert status == 401 and answer["error"]["code"] == "invalid_api_key", (path, headers, answer)
    assert call(server, "/v1/classify", item)[0] == 200
    assert KEY not in server.output()


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium: apt-get install chromium (the page test drives it with Playwright)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (it drives the system chromium)")
    return path, sync_playwright


def test_the_page_shows_the_labels_the_api_gives(server, demo_dir):
    executable, sync_playwright = _chromium()
    item = _test_items(demo_dir)[0]
    _, expected = call(server, "/v1/classify", {"text": item["text"], "image": item["image"]})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url)  # the page itself needs no key; its calls carry the one typed in
        page.fill("#key", KEY)
        page.set_input_files("#image", str(demo_dir / "images" / "test_00000.png"))
        page.fill("#text", item["text"])
        page.wait_for_function("document.getElementById('preview').src.startsWith('data:')")
        page.click("#submit")
        page.wait_for_selector("#labels[data-done=true]", timeout=60_000)
        shown = page.eval_on_selector_all(
            "#labels li",
            "els => els.map(e => [e.dataset.label, e.className, e.querySelector('.p').textContent])",
        )
        raw = page.inner_text("#raw")
        title = page.inner_text("#model")
        browser.close()
    assert title == call(server, "/v1/models")[1]["data"][0]["id"]
    assert raw == expected["output"]
    assert {label for label, cls, _ in shown if cls == "predicted"} == set(expected["labels"])
    assert {label: p for label, _, p in shown} == {
        k: f"{100 * v:.1f}%" for k, v in expected["scores"].items()
    }


def test_the_load_benchmark_drives_the_server(server, demo_dir):
    """benchmarks/serve_load.py's client loop, small (no timing asserted): the script cannot rot."""
    spec = importlib.util.spec_from_file_location("serve_load", REPO / "benchmarks" / "serve_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    items = bench.demo_items(demo_dir)
    figures = bench.drive(server.url, items, clients=4, requests=8, max_seconds=120, headers=AUTH)
    assert figures["requests"] == 8 and figures["errors"] == 0
    assert (
        0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] and figures["requests_per_second"] > 0
    )


def test_sigterm_lets_the_requests_in_flight_finish(server, demo_dir):
    """Last in the module: it stops the server. Four requests of 64 items each (seconds of work on the
    tiny model, even on a fast machine: one request alone finished before the signal once) are sent at
    once; SIGTERM comes while they are answered, and every one of them still gets its 200."""
    items = json.dumps((_test_items(demo_dir) * 8)[:64])
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=120) for _ in range(4)]
    for connection in connections:
        connection.request("POST", "/v1/classify", items, headers=AUTH)  # sent; the answers are read below
    time.sleep(0.5)  # all four received (a request after SIGTERM would get a 503), none answered yet
    server.process.send_signal(signal.SIGTERM)
    for connection in connections:
        response = connection.getresponse()
        assert response.status == 200 and len(json.loads(response.read())) == 64
    assert server.process.wait(90) == 0
    assert health(server.url, AUTH) is None  # gone
    drained = re.search(r"draining (\d+) in-flight requests", server.output())
    assert drained and int(drained.group(1)) >= 1, server.output()[-2000:]
