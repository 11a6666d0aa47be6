"""Request bodies read into items, in the HTTP process and before anything is queued: a request that is
malformed, too large or asks for a remote file is answered with a 4xx naming the field and the limit,
and never reaches the model. Nothing here imports torch."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

ITEM_FIELDS = ("text", "image", "choices", "context", "id")
IMAGES_PER_ITEM = 1  # a sample carries one image (mmlearn.sample.Sample.image_path)


@dataclass(frozen=True)
class Limits:
    """conf/serve.yaml's `limits`: the body size in bytes, the items of one /v1/classify request, and the
    tokens of an item's text and context."""

    max_body_bytes: int
    max_items: int
    max_text_tokens: int

    def __post_init__(self) -> None:
        for key in ("max_body_bytes", "max_items", "max_text_tokens"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"limits.{key} must be a positive integer, got {getattr(self, key)}")


class RequestError(Exception):
    """An answer with `status`, naming the request's `field` and, where one applies, the `limit` broken
    (`{"name": <config key>, "value": <its value>}`)."""

    def __init__(self, status: int, field: str, message: str, code: str, limit: dict | None = None):
        super().__init__(f"{field}: {message}")
        self.status, self.field, self.message, self.code, self.limit = status, field, message, code, limit

    def fields(self) -> dict:
        """What crosses the worker's queue (an exception with these arguments does not pickle)."""
        return {
            "status": self.status,
            "field": self.field,
            "message": self.message,
            "code": self.code,
            "limit": self.limit,
        }

    @classmethod
    def from_fields(cls, fields: dict) -> RequestError:
        return cls(**fields)

    def body(self) -> dict:
        """The JSON body (OpenAI's error shape, which its client reads, with the field and limit)."""
        kind = "authentication_error" if self.status == 401 else "invalid_request_error"
        if self.status >= 500:
            kind = "server_error"
        error = {
            "message": str(self),
            "type": kind,
            "code": self.code,
            "field": self.field,
            "param": self.field,
        }
        if self.limit is not None:
            error["limit"] = self.limit
        return {"error": error}


def body_too_large(size: int, limits: Limits) -> RequestError:
    return RequestError(
        413,
        "body",
        f"{size} bytes, over the limit of {limits.max_body_bytes}",
        "body_too_large",
        {"name": "limits.max_body_bytes", "value": limits.max_body_bytes},
    )


def parse_json(raw: bytes):
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, "body", f"not valid JSON ({err})", "invalid_json") from err


def _string(value, field: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise RequestError(400, field, f"must be a string, got {type(value).__name__}", "invalid_type")
    return value


def decode_base64(value: str, field: str) -> bytes:
    """Plain base64, or a `data:` URI (`data:image/png;base64,...`) as a browser's FileReader gives it."""
    if value.startswith("data:"):
        return data_uri(value, field)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, field, f"not valid base64 ({err})", "invalid_base64") from err
    if not data:
        raise RequestError(400, field, "empty image", "invalid_image")
    return data


def data_uri(value: str, field: str) -> bytes:
    header, comma, payload = value.partition(",")
    media = header[len("data:") :].split(";")[0]
    if not comma or not header.endswith(";base64"):
        raise RequestError(
            400, field, "a data: URI must be base64 (data:image/<type>;base64,...)", "invalid_uri"
        )
    if media and not media.startswith("image/"):
        raise RequestError(400, field, f"not an image: the data: URI says {media!r}", "not_an_image")
    return decode_base64(payload, field)


def classify_items(body, limits: Limits) -> tuple[list[dict], bool]:
    """(items, whether the body was a single object): `{"text": ..., "image": "<base64>"}` or a list of
    such objects."""
    single = isinstance(body, dict)
    objects = [body] if single else body
    if not isinstance(objects, list) or not objects:
        raise RequestError(400, "body", "an item object or a non-empty list of them", "invalid_type")
    if len(objects) > limits.max_items:
        raise RequestError(
            400,
            "body",
            f"{len(objects)} items, over the limit of {limits.max_items}",
            "too_many_items",
            {"name": "limits.max_items", "value": limits.max_items},
        )
    names = ["body"] if single else [f"body[{i}]" for i in range(len(objects))]
    return [classify_item(obj, name) for obj, name in zip(objects, names, strict=True)], single


def classify_item(obj, name: str) -> dict:
    if not isinstance(obj, dict):
        raise RequestError(400, name, f"must be an object, got {type(obj).__name__}", "invalid_type")
    unknown = sorted(set(obj) - set(ITEM_FIELDS))
    if unknown:
        raise RequestError(
            400,
            f"{name}.{unknown[0]}",
            f"unknown field; an item has {', '.join(ITEM_FIELDS)}",
            "unknown_field",
        )
    image = obj.get("image")
    if isinstance(image, list):
        raise RequestError(
            400,
            f"{name}.image",
            f"{len(image)} images, but an item takes {IMAGES_PER_ITEM} (one image per sample)",
            "too_many_images",
            {"name": "images per item", "value": IMAGES_PER_ITEM},
        )
    choices = obj.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise RequestError(400, f"{name}.choices", "must be a list of strings", "invalid_type")
    item_id = obj.get("id")
    return {
        "text": _string(obj.get("text"), f"{name}.text"),
        "image": None if image is None else decode_base64(_string(image, f"{name}.image"), f"{name}.image"),
        "choices": tuple(choices),
        "context": _string(obj.get("context"), f"{name}.context"),
        "id": None if item_id is None else str(item_id),
        "name": name,
    }


def chat_item(body, file_root: str | None) -> tuple[dict, str]:
    """(the item, the requested model) from an OpenAI chat request: one user message whose text parts
    are the item's text and whose `image_url` part (a `data:` URI; `file://` under `image_file_root`)
    is its image. The served run applies its own prompt, so system and assistant turns are refused."""
    if not isinstance(body, dict):
        raise RequestError(400, "body", "a chat completion request object", "invalid_type")
    if body.get("stream"):
        raise RequestError(400, "stream", "streaming is not supported: the answer is short", "unsupported")
    if body.get("n", 1) != 1:
        raise RequestError(400, "n", "only n=1: the run's decoder gives one answer", "unsupported")
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) != 1:
        raise RequestError(
            400,
            "messages",
            "exactly one user message (the served run applies its own prompt to it)",
            "invalid_messages",
        )
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user":
        raise RequestError(400, "messages[0].role", "must be 'user'", "invalid_messages")
    texts, images = _message_parts(message.get("content"), "messages[0].content", file_root)
    if len(images) > IMAGES_PER_ITEM:
        raise RequestError(
            400,
            "messages[0].content",
            f"{len(images)} images, but the served prompt takes {IMAGES_PER_ITEM} (one image per sample)",
            "too_many_images",
            {"name": "images per request", "value": IMAGES_PER_ITEM},
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "model", "required: the served run's name (GET /v1/models)", "invalid_model")
    item = {
        "text": "\n".join(texts) or None,
        "image": images[0] if images else None,
        "choices": (),
        "context": None,
        "id": None,
        "name": "messages[0]",
    }
    return item, model


def _message_parts(content, field: str, file_root: str | None) -> tuple[list[str], list[bytes]]:
    if isinstance(content, str):
        return [content], []
    if not isinstance(content, list):
        raise RequestError(400, field, "a string or a list of content parts", "invalid_type")
    texts, images = [], []
    for i, part in enumerate(content):
        where = f"{field}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(_string(part.get("text"), f"{where}.text", required=True))
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            images.append(
                image_from_url(_string(url, f"{where}.image_url.url", required=True), where, file_root)
            )
        else:
            raise RequestError(400, f"{where}.type", "must be 'text' or 'image_url'", "invalid_type")
    return texts, images


def image_from_url(url: str, where: str, file_root: str | None) -> bytes:
    """A `data:` URI's bytes, or a file under `image_file_root`; a remote URL is never fetched."""
    field = f"{where}.image_url.url"
    scheme = urlparse(url).scheme.lower()
    if scheme == "data":
        return data_uri(url, field)
    if scheme == "file":
        return _local_file(unquote(urlparse(url).path), field, file_root)
    raise RequestError(
        400,
        field,
        f"{scheme or 'a relative'} URLs are refused: the server fetches nothing; send the image as a data: URI",
        "remote_url_refused",
        {"name": "image_file_root", "value": file_root},
    )


def _local_file(path: str, field: str, file_root: str | None) -> bytes:
    limit = {"name": "image_file_root", "value": file_root}
    if file_root is None:
        raise RequestError(
            400, field, "file:// URLs are refused (image_file_root is null)", "file_refused", limit
        )
    root = os.path.realpath(file_root)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        raise RequestError(
            400, field, f"{path} is outside image_file_root {file_root}", "file_refused", limit
        )
    if not Path(real).is_file():
        raise RequestError(400, field, f"no such file under image_file_root: {path}", "file_not_found")
    return Path(real).read_bytes()
