"""A conversation as a sample: its turns in order, with the images where their placeholders stood."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmlearn.sample import Sample

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One message: `parts` are its text segments in order, with None where an image goes."""

    role: str
    parts: tuple[str | None, ...]

    @property
    def text(self) -> str:
        return "\n".join(part for part in self.parts if part is not None)

    @property
    def n_images(self) -> int:
        return sum(part is None for part in self.parts)


@dataclass(frozen=True)
class ConversationSample(Sample):
    """`text` is the last user turn, `labels` the last reply (what generation is scored against),
    `image_path` the first image (for the with/without image counts); `turns` and `images` are the
    whole conversation, which training encodes."""

    turns: tuple[Turn, ...] = ()
    images: tuple[Path, ...] = ()


def as_turns(prompt: str, n_images: int, answer: str | None, system: str | None = None) -> tuple[Turn, ...]:
    """A single-turn sample as a conversation: images first, then the prompt (the order every
    single-turn path of mmlearn renders), then the reply."""
    turns = [Turn("system", (system,))] if system else []
    turns.append(Turn("user", (*[None] * n_images, prompt)))
    if answer is not None:
        turns.append(Turn("assistant", (answer,)))
    return tuple(turns)
