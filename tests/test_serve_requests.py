"""Request bodies read in the HTTP process, before anything is queued (no model, no server): each bad
kind is refused naming its field and limit; remote URLs are never fetched; files only under the root;
the API key check; the serving knobs are checked by name and compose from evaluate.yaml."""

import base64
import io

import pytest
from PIL import Image

from mmlearn.serving.auth import check_bearer
from mmlearn.serving.requests import (
    Limits,
    RequestError,
    chat_item,
    classify_items,
    decode_base64,
    image_from_url,
    parse_json,
)
from tests.conftest import compose

LIMITS = Limits(max_body_bytes=1000, max_items=3, max_text_tokens=10)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(out, "PNG")
    return out.getvalue()


PNG = _png()
B64 = base64.b64encode(PNG).decode()


def _refused(call, *args) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args)
    return caught.value


def test_one_item_and_a_list_of_items():
    (item,), single = classify_items({"text": "hi", "image": B64, "id": 7}, LIMITS)
    assert single and item["image"] == PNG and item["id"] == "7" and item["name"] == "body"
    items, single = classify_items(
        [{"text": "a"}, {"text": "b", "image": f"data:image/png;base64,{B64}"}], LIMITS
    )
    assert not single and [i["name"] for i in items] == ["body[0]", "body[1]"] and items[1]["image"] == PNG


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"txt": "a"}, "body.txt", "unknown_field"),
        ({"text": 3}, "body.text", "invalid_type"),
        ({"image": "not base64!"}, "body.image", "invalid_base64"),
        ({"image": "data:text/plain;base64,aGk="}, "body.image", "not_an_image"),
        ({"image": [B64, B64]}, "body.image", "too_many_images"),
        ([{"text": "a"}] * 4, "body", "too_many_items"),
        ([], "body", "invalid_type"),
        ("text", "body", "invalid_type"),
        ([{"text": "a"}, 5], "body[1]", "invalid_type"),
        ({"choices": "A,B"}, "body.choices", "invalid_type"),
    ],
)
def test_bad_classify_bodies_name_the_field(body, field, code):
    err = _refused(classify_items, body, LIMITS)
    assert (err.status, err.field, err.code) == (400, field, code)
    assert err.body()["error"]["field"] == field and field in err.body()["error"]["message"]


def test_the_item_limit_is_named_with_its_value():
    err = _refused(classify_items, [{"text": "a"}] * 4, LIMITS)
    assert err.limit == {"name": "limits.max_items", "value": 3}
    assert "4 items, over the limit of 3" in str(err)


def test_malformed_json():
    err = _refused(parse_json, b"{bad")
    assert (err.status, err.field, err.code) == (400, "body", "invalid_json")
    assert _refused(parse_json, b"\xff\xfe{").code == "invalid_json"


def _chat(*parts, **extra):
    return {"model": "m", "messages": [{"role": "user", "content": list(parts)}], **extra}


def test_chat_text_and_a_data_uri_image():
    item, model = chat_item(
        _chat(
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{B64}"}},
        ),
        None,
    )
    assert model == "m" and item["text"] == "a" and item["image"] == PNG
    item, _ = chat_item({"model": "m", "messages": [{"role": "user", "content": "plain"}]}, None)
    assert item["text"] == "plain" and item["image"] is None


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (
            _chat({"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}),
            "messages[0].content[0].image_url.url",
            "remote_url_refused",
        ),
        (
            _chat({"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}),
            "messages[0].content[0].image_url.url",
            "remote_url_refused",
        ),
        (
            _chat({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}),
            "messages[0].content[0].image_url.url",
            "file_refused",
        ),
        (
            _chat(*[{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{B64}"}}] * 2),
            "messages[0].content",
            "too_many_images",
        ),
        (_chat({"type": "audio"}), "messages[0].content[0].type", "invalid_type"),
        (_chat({"type": "text", "text": "a"}, stream=True), "stream", "unsupported"),
        (_chat({"type": "text", "text": "a"}, n=2), "n", "unsupported"),
        ({"messages": [{"role": "user", "content": "a"}]}, "model", "invalid_model"),
        (
            {"model": "m", "messages": [{"role": "system", "content": "a"}]},
            "messages[0].role",
            "invalid_messages",
        ),
        ({"model": "m", "messages": []}, "messages", "invalid_messages"),
    ],
)
def test_bad_chat_requests_name_the_field(body, field, code):
    err = _refused(chat_item, body, None)
    assert (err.status, err.field, err.code) == (400, field, code)


def test_file_urls_only_under_the_allowed_root(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    assert image_from_url(f"file://{root / 'a.png'}", "x", str(root)) == PNG
    for outside in (
        f"file://{root}/../secret.png",
        f"file://{root / 'link.png'}",
        f"file://{tmp_path / 'secret.png'}",
    ):
        err = _refused(image_from_url, outside, "x", str(root))
        assert err.code == "file_refused" and err.limit == {"name": "image_file_root", "value": str(root)}
    assert _refused(image_from_url, f"file://{root / 'none.png'}", "x", str(root)).code == "file_not_found"


def test_base64_errors():
    assert _refused(decode_base64, "", "f").code == "invalid_image"
    assert _refused(decode_base64, "data:image/png,abc", "f").code == "invalid_uri"


def test_api_key(monkeypatch):
    monkeypatch.delenv("MMLEARN_TEST_KEY", raising=False)
    check_bearer(None, "MMLEARN_TEST_KEY")  # not set: nothing required
    monkeypatch.setenv("MMLEARN_TEST_KEY", "s3cret")
    check_bearer("Bearer s3cret", "MMLEARN_TEST_KEY")
    for header in (None, "Bearer wrong", "s3cret", "Basic s3cret"):
        err = _refused(check_bearer, header, "MMLEARN_TEST_KEY")
        assert err.status == 401 and "s3cret" not in str(err.body())


def test_limits_are_checked_by_name():
    with pytest.raises(ValueError, match=r"limits\.max_items"):
        Limits(max_body_bytes=1, max_items=0, max_text_tokens=1)


def test_serve_config_composes_from_evaluate_and_settings_are_checked():
    from mmlearn.serving import ServeSettings

    cfg = compose(["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o", "decoding=score"], "serve")
    assert cfg.task_name == "serve" and cfg.split == "test" and cfg.decoding._target_.endswith("ScoreDecoder")
    settings = ServeSettings.from_config(cfg)
    assert settings.host == "127.0.0.1" and settings.api_key_env == "MMLEARN_API_KEY"
    assert isinstance(settings.limits, Limits)
    for bad, key in (
        ("host=example.com", "host="),
        ("port=80", "port="),
        ("max_batch_size=0", "max_batch_size="),
    ):
        with pytest.raises(ValueError, match=key):
            ServeSettings.from_config(compose(["paths.root_dir=/tmp/x", bad], "serve"))
