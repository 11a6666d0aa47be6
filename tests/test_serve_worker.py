"""The inference worker's side of a batch, with a stand-in predictor (no model): a request's own fault
answers that request alone, a batch that fails is answered request by request, items are decoded
`data.eval_batch_size` at a time, and a request for another model is a 404."""

from types import SimpleNamespace

from mmlearn.inference import InputError
from mmlearn.serving.api import DESCRIBE, ServedModel
from mmlearn.serving.requests import Limits
from mmlearn.serving.server import Events


class Tokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class Predictor:
    """Answers each sample with its text; a batch holding the text 'boom' raises."""

    name = "served"

    def __init__(self):
        self.calls = []
        self.context = SimpleNamespace(tokenizer=Tokenizer())
        self.config = SimpleNamespace(data=SimpleNamespace(eval_batch_size=2))
        self.datamodule = SimpleNamespace(inputs=SimpleNamespace(images=SimpleNamespace(max_pixels=100)))

    def sample(self, item, index):
        if item.image == b"big":
            raise InputError(f"{item.name}.image", "10x20 = 200 pixels, over data.max_image_pixels=100")
        return SimpleNamespace(id=item.id or str(index), text=item.text)

    def answer(self, samples):
        self.calls.append(len(samples))
        if any(s.text == "boom" for s in samples):
            raise RuntimeError("a sample broke the batch")
        return [{"id": s.id, "output": s.text, "parsed": [s.text], "parse_ok": True} for s in samples]

    def describe(self):
        return {"id": self.name}


def _api():
    settings = SimpleNamespace(
        max_batch_size=8,
        batch_timeout=0.0,
        limits=Limits(max_body_bytes=1000, max_items=8, max_text_tokens=3),
        api_key_env="MMLEARN_TEST_KEY",
    )
    api = ServedModel({}, [], settings, None, Events())
    api.predictor = Predictor()
    api.events.loaded.set()
    return api


def _request(*texts, model=None, image=None):
    items = [
        {"text": t, "image": image, "choices": (), "context": None, "id": None, "name": f"body[{i}]"}
        for i, t in enumerate(texts)
    ]
    return {"kind": "classify", "items": items, "model": model}


def _answer(api, requests):
    jobs = [api.decode_request(r) for r in requests]
    return [api.encode_response(j) for j in api.predict(jobs)]


def test_items_are_decoded_eval_batch_size_at_a_time_across_requests():
    api = _api()
    first, second, info = _answer(api, [_request("a", "b", "c"), _request("d"), {"kind": DESCRIBE}])
    assert [r["output"] for r in first["result"]] == ["a", "b", "c"] and second["result"][0]["output"] == "d"
    assert info == {"result": {"id": "served"}}
    assert api.predictor.calls == [2, 2]


def test_a_request_fault_is_answered_alone():
    api = _api()
    good, long_text, big_image, other_model = _answer(
        api,
        [
            _request("a"),
            _request("one two three four"),
            _request("x", image=b"big"),
            _request("a", model="other"),
        ],
    )
    assert good["result"][0]["output"] == "a"
    assert long_text["error"]["field"] == "body[0].text" and long_text["error"]["limit"] == {
        "name": "limits.max_text_tokens",
        "value": 3,
    }
    assert big_image["error"]["field"] == "body[0].image" and big_image["error"]["limit"]["value"] == 100
    assert other_model["error"]["status"] == 404 and "'served'" in other_model["error"]["message"]


def test_a_failing_batch_is_answered_request_by_request():
    api = _api()
    good, broken = _answer(api, [_request("a"), _request("boom")])
    assert good["result"][0]["output"] == "a"
    assert broken["error"]["status"] == 500 and broken["error"]["code"] == "model_error"


def test_before_the_model_is_loaded_requests_get_503():
    api = _api()
    api.events.loaded.clear()
    (answer,) = [api.encode_response(api.decode_request(_request("a")))]
    assert answer["error"]["status"] == 503 and not api.health()
