"""The three conversation layouts peers use, read into one form: turns of text parts and image slots,
and the image references in the order their slots appear.

- llava: {"id", "image": path | [paths], "conversations": [{"from": "human"|"gpt", "value": "... <image> ..."}]}
- sharegpt: {"conversations"|"messages": [{"from"|"role", "value"|"content": str}], "images": [...], "system"?}
- openai: {"messages": [{"role", "content": str | [{"type": "text"|"image"|"image_url", ...}]}]}
"""

from __future__ import annotations

from mmlearn.data.conversations.sample import Turn
from mmlearn.data.sample import BadSampleError

FORMATS = ("auto", "llava", "sharegpt", "openai")
IMAGE_TOKEN = "<image>"
ROLE_NAMES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def check_format(value: str) -> str:
    if value not in FORMATS:
        raise ValueError(f"data.format must be one of {FORMATS}, got {value!r}")
    return value


def detect(row: dict) -> str:
    """The layout of one row: OpenAI messages carry content lists, LLaVA an `image` key, ShareGPT the rest."""
    messages = row.get("messages")
    if isinstance(messages, list) and any(
        isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages
    ):
        return "openai"
    if "conversations" in row and "images" not in row:
        return "llava"
    return "sharegpt"


def parse_row(row: dict, fmt: str) -> tuple[list[Turn], list[str]]:
    """(turns, image references); a row that does not fit the layout raises BadSampleError."""
    fmt = detect(row) if fmt == "auto" else fmt
    if fmt == "openai":
        turns, images = _openai(row)
    else:
        key = "conversations" if fmt == "llava" else _messages_key(row)
        raw_images = row.get("image" if fmt == "llava" else "images")
        turns = [_placeholder_turn(m, i) for i, m in enumerate(_messages(row, key))]
        if fmt == "sharegpt" and isinstance(row.get("system"), str) and row["system"].strip():
            turns.insert(0, Turn("system", (row["system"].strip(),)))
        images = _image_list(raw_images, "image" if fmt == "llava" else "images")
    check_turns(turns)
    slots = sum(turn.n_images for turn in turns)
    if slots != len(images):
        raise BadSampleError(
            f"{slots} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s) given ({fmt} format)"
        )
    return turns, images


def _messages_key(row: dict) -> str:
    for key in ("conversations", "messages"):
        if key in row:
            return key
    raise BadSampleError("no 'conversations' or 'messages' list")


def _messages(row: dict, key: str) -> list:
    messages = row.get(key)
    if not isinstance(messages, list) or not messages:
        raise BadSampleError(f"{key!r} must be a non-empty list of messages")
    return messages


def _role(message, index: int, keys: tuple[str, ...]) -> str:
    if not isinstance(message, dict):
        raise BadSampleError(f"message {index} is not an object")
    raw = next((message[k] for k in keys if k in message), None)
    role = ROLE_NAMES.get(raw) if isinstance(raw, str) else None
    if role is None:
        raise BadSampleError(f"message {index} has role {raw!r}; expected one of {sorted(ROLE_NAMES)}")
    return role


def _placeholder_turn(message, index: int) -> Turn:
    role = _role(message, index, ("from", "role"))
    value = next((message[k] for k in ("value", "content") if k in message), None)
    if not isinstance(value, str):
        raise BadSampleError(f"message {index} has no text ('value' or 'content' string)")
    return Turn(role, split_placeholders(value, index))


def split_placeholders(text: str, index: int) -> tuple[str | None, ...]:
    """ "<image>\\nWhat is it?" -> (None, "What is it?"): text segments stripped, empty ones dropped."""
    parts: list[str | None] = []
    for n, segment in enumerate(text.split(IMAGE_TOKEN)):
        if n:
            parts.append(None)
        if segment.strip():
            parts.append(segment.strip())
    if not parts:
        raise BadSampleError(f"message {index} is empty")
    return tuple(parts)


def _image_list(raw, key: str) -> list[str]:
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise BadSampleError(f"{key!r} must be a path or a list of paths, got {raw!r}")
    return [i.strip() for i in items]


def _openai(row: dict) -> tuple[list[Turn], list[str]]:
    turns, images = [], []
    for index, message in enumerate(_messages(row, "messages")):
        role = _role(message, index, ("role",))
        content = message.get("content")
        if isinstance(content, str):
            turns.append(Turn(role, split_placeholders(content, index)))
            continue
        if not isinstance(content, list) or not content:
            raise BadSampleError(f"message {index} content must be a string or a non-empty list of parts")
        parts: list[str | None] = []
        for item in content:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text" and isinstance(item.get("text"), str):
                if item["text"].strip():
                    parts.append(item["text"].strip())
            elif kind in ("image", "image_url"):
                parts.append(None)
                images.append(_openai_image(item, index))
            else:
                raise BadSampleError(f"message {index} has a content part {item!r} that is not text or image")
        turns.append(Turn(role, tuple(parts)))
    return turns, images


def _openai_image(item: dict, index: int) -> str:
    ref = item.get("image") if item["type"] == "image" else item.get("image_url")
    if isinstance(ref, dict):
        ref = ref.get("url")
    if not isinstance(ref, str) or not ref.strip():
        raise BadSampleError(f"message {index} has an image part without a path: {item!r}")
    if ref.startswith(("http://", "https://", "data:")):
        raise BadSampleError(
            f"message {index}: image {ref[:40]!r} is not a file path (nothing is downloaded)"
        )
    return ref.removeprefix("file://").strip()


def check_turns(turns: list[Turn]) -> None:
    """An optional system turn first, then user and assistant alternating, ending with the assistant."""
    body = turns[1:] if turns and turns[0].role == "system" else turns
    roles = [turn.role for turn in body]
    expected = ["user", "assistant"] * (len(roles) // 2 + 1)
    if not roles or roles != expected[: len(roles)] or roles[-1] != "assistant":
        raise BadSampleError(
            f"turns go {roles}: expected an optional system turn, then user/assistant alternating, "
            "ending with an assistant reply"
        )
    for turn in body:
        if not turn.parts:
            raise BadSampleError(f"a {turn.role} turn is empty")
        if turn.role == "assistant" and turn.n_images:
            raise BadSampleError("an assistant turn holds an image; images belong to user turns")
    if turns[0].role == "system" and turns[0].n_images:
        raise BadSampleError("a system turn holds an image")
