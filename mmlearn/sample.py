"""One labelled example: what readers produce and tasks prompt, answer and score.

A leaf module (it imports nothing from mmlearn), so `mmlearn.data` and `mmlearn.tasks` can both use
it without importing each other.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ImageRow(Protocol):
    """An image held in a dataset rather than a file (`mmlearn.data.images.ArrowImageRef`)."""

    def open(self) -> io.BytesIO | Path: ...


@dataclass(frozen=True)
class Sample:
    id: str
    text: str | None
    image_path: Path | ImageRow | None  # a file, or a row of an Arrow dataset (hf layout)
    labels: tuple[str, ...]  # class labels; the answer letter (multiple choice); reference captions
    source: str = ""  # "file:row", so any later error can name where the sample came from
    choices: tuple[str, ...] = ()  # multiple-choice options, in the order they are lettered
    context: str | None = None  # extra text shown with the question (ScienceQA's hint)
