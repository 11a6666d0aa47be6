"""Which inputs a run feeds the model: text, image, or both."""

from __future__ import annotations

from dataclasses import dataclass

NAMES = ("text", "image", "text_image")


@dataclass(frozen=True)
class Modality:
    name: str

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise ValueError(f"modality must be one of {NAMES}, got {self.name!r}")

    @property
    def text(self) -> bool:
        return self.name in ("text", "text_image")

    @property
    def image(self) -> bool:
        return self.name in ("image", "text_image")
