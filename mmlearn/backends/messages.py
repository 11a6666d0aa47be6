"""A batch's samples as OpenAI-style chat messages, rendered as the local prompt is: the family's system
prompt, each in-context example as an earlier user turn (its images, then its prompt) and the
assistant's answer, then the query's images and prompt. Images travel as lossless PNG `data:` URIs, so
a server holding the same checkpoint sees the same pixels the local processor sees."""

from __future__ import annotations

import base64
import io


def data_uri(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _user(prompt: str, images: list) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": data_uri(image)}} for image in images]
    return {"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}


def chat_messages(system: str | None, prompt: str, images: list, shots=()) -> list[dict]:
    """One sample's conversation; `shots` are (prompt, images, answer) triples, as the collator makes them."""
    messages = [{"role": "system", "content": system}] if system else []
    for shot_prompt, shot_images, answer in shots:
        messages += [_user(shot_prompt, shot_images), {"role": "assistant", "content": answer}]
    return [*messages, _user(prompt, images)]


def batch_messages(context, batch: dict) -> list[list[dict]]:
    """Every sample of a collated batch (`prompts`, `images`, `shots`) as its conversation."""
    system = getattr(context.prompt, "system", None)
    shots = batch.get("shots") or [()] * len(batch["prompts"])
    return [
        chat_messages(system, prompt, images, row)
        for prompt, images, row in zip(batch["prompts"], batch["images"], shots, strict=True)
    ]


def item_messages(batch: dict) -> list[list[dict]]:
    """Every sample as one user message holding only its own text and image, for a server that applies
    the run's prompt itself (mmlearn's serve.py): the instruction and in-context turns are not sent."""
    if batch.get("shots"):
        raise ValueError(
            "backend.messages=item sends each sample bare: in-context examples need backend.messages=prompt"
        )
    conversations = []
    for sample, images in zip(batch["samples"], batch["images"], strict=True):
        if getattr(sample, "choices", None):
            raise ValueError(f"backend.messages=item cannot send the answer options of sample {sample.id}")
        text = [{"type": "text", "text": sample.text}] if sample.text else []
        parts = [{"type": "image_url", "image_url": {"url": data_uri(image)}} for image in images]
        conversations.append([{"role": "user", "content": [*parts, *text]}])
    return conversations


def text_size(messages: list[dict]) -> tuple[int, int]:
    """Characters of text and number of images in a conversation (for the cost estimate)."""
    chars = images = 0
    for message in messages:
        content = message["content"]
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if part["type"] == "text":
                chars += len(part["text"])
            else:
                images += 1
    return chars, images
