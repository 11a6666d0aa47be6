"""Saved adapters and models that describe themselves: mmlearn.json (the settings needed to use them
without mmlearn) and a model card README.md, written beside the weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mmlearn.artefacts.card import render_card
from mmlearn.artefacts.describe import FILE, describe_export, describe_run
from mmlearn.io import write_atomic, write_json


def write_description(directory: str | Path, description: dict) -> None:
    """mmlearn.json and README.md; the card replaces the empty one PEFT's `save_pretrained` writes."""
    directory = Path(directory)
    write_json(directory / FILE, description)
    write_atomic(directory / "README.md", render_card(description))


def save_described(directory: Path, save: Callable[[Path], None], description: dict) -> None:
    save(directory)
    write_description(directory, description)


def read_description(directory: str | Path) -> dict | None:
    """A folder's mmlearn.json, or None for one saved before mmlearn wrote it."""
    path = Path(directory) / FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


__all__ = ["describe_export", "describe_run", "read_description", "save_described", "write_description"]
