"""What a decoder returns, and the check that a task has the closed answer set a decoder needs."""

from __future__ import annotations

from dataclasses import dataclass

from mmlearn.tasks.base import Parsed


@dataclass(frozen=True)
class Decoded:
    """One answer: the text, what the task's parser made of it, and per-class probabilities when the
    decoder computes them."""

    output: str
    parsed: Parsed
    scores: dict[str, float] | None = None


class Decoder:
    name = ""

    def check(self, task) -> None:
        """Raise when this decoder cannot serve the task; called once, before any batch."""

    def decode(self, module, batch: dict) -> list[Decoded]:
        raise NotImplementedError


def pad_or_eos(tokenizer) -> int:
    """The token that fills a finished row: the pad token, else the end token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def stop_token_ids(generation_config, tokenizer) -> list[int]:
    """The tokenizer's end token and every end token of the checkpoint's generation config: passing one
    id to `generate` replaces the config's list (Qwen2-VL also ends on <|endoftext|>, Llama 3 on three)."""
    configured = generation_config.eos_token_id
    configured = configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(i for i in [tokenizer.eos_token_id, *configured] if i is not None))


def require_closed_answers(decoder: Decoder, task, limit: int) -> list[tuple[str, tuple[str, ...]]]:
    """The task's valid answers, or a clear error for tasks without a closed set (captioning, ...)."""
    if not callable(getattr(task, "candidates", None)):
        raise ValueError(
            f"decoding={decoder.name} needs a task with a closed set of answers (classification); "
            f"{type(task).__name__} supports only decoding=generate"
        )
    return task.candidates(limit)
