"""Seed 001's generic layout: CSV or JSONL rows with `text`, `image_path`, `labels`."""

from __future__ import annotations

import ast
import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

from mmlearn.data.modality import Modality
from mmlearn.data.policy import InputPolicy
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.data.text_files import json_lines, open_text, refuse_undecodable
from mmlearn.sample import Sample

REQUIRED_COLUMNS = ("text", "image_path", "labels")
UNLABELLED_COLUMNS = ("text", "image_path")  # a predict file: `labels` may be absent (it is not read)


def iter_rows(
    path: Path, encoding: str, required: tuple[str, ...] = REQUIRED_COLUMNS
) -> Iterator[tuple[int, dict]]:
    """(row number, row) pairs; CSV rows count from 2 (line 1 is the header), JSONL from 1. A row that
    cannot be parsed comes as {"__error__": why}, for the shared loop to raise or skip."""
    if path.suffix == ".jsonl":
        yield from json_lines(path, encoding)
        return
    with open_text(path, encoding, newline="") as handle:
        reader = csv.DictReader(handle, strict=True)
        header = _header(reader, path, encoding)
        missing = [c for c in required if c not in header]
        if missing:
            raise BadSampleError(f"{path}: missing column(s) {missing}; found {header}")
        for number in itertools.count(2):
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield number, {"__error__": f"malformed CSV row: {err}"}
                continue
            if None in row or None in row.values():
                yield number, {"__error__": f"row has {_fields(row)} fields, header has {len(header)}"}
                continue
            yield number, row


def _header(reader: csv.DictReader, path: Path, encoding: str) -> list[str]:
    """The column names; a byte-order mark left on the first (a BOM under data.encoding=utf-8) is not
    part of its name, so an `id` first column is still the id."""
    try:
        names = list(reader.fieldnames or [])
    except csv.Error as err:
        raise BadSampleError(f"{path}:1: malformed header: {err}") from err
    refuse_undecodable(",".join(names), path, encoding)
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
        reader.fieldnames = names
    return names


def _fields(row: dict) -> int:
    return sum(value is not None for key, value in row.items() if key is not None) + len(row.get(None) or [])


def parse_labels(raw) -> tuple[str, ...]:
    """Comma-joined (`racist,sexist`), a JSON list, or a Python list literal; empty means no label."""
    if isinstance(raw, list):
        items = raw
    else:
        text = "" if raw is None else str(raw).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                try:
                    items = ast.literal_eval(text)
                except (ValueError, SyntaxError) as err:
                    raise BadSampleError(f"labels {text!r} are not a valid list") from err
        else:
            items = text.split(",") if text else []
    if not all(isinstance(item, str) for item in items):
        raise BadSampleError(f"labels must be strings, got {raw!r}")
    return tuple(item.strip() for item in items if item.strip())


class TableReader:
    """Reads one split file into validated samples, raising or skipping bad rows as configured.
    `labelled=False` reads a predict file: rows without gold labels (any `labels` are not read)."""

    def __init__(
        self,
        *,
        image_root: Path,
        labels: list[str],
        task: str,
        modality: Modality,
        inputs: InputPolicy,
        labelled: bool = True,
    ) -> None:
        self.image_root = Path(image_root)
        self.labels = set(labels)
        self.task = task
        self.modality = modality
        self.inputs = inputs
        self.labelled = labelled
        self.required = REQUIRED_COLUMNS if labelled else UNLABELLED_COLUMNS

    def read(self, path: Path) -> tuple[list[Sample], SplitReport]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"split file not found: {path}")
        rows = iter_rows(path, self.inputs.encoding, self.required)
        return self.inputs.collect(((f"{path}:{n}", row) for n, row in rows), self._sample, file=str(path))

    def _sample(self, row: dict, source: str) -> Sample:
        missing = [c for c in self.required if c not in row]
        if missing:
            raise BadSampleError(f"missing key(s) {missing}")
        sample_id = str(row.get("id") or source.rsplit(":", 1)[1])
        labels = parse_labels(row["labels"]) if self.labelled else ()
        unknown = sorted(set(labels) - self.labels)
        if unknown:
            raise BadSampleError(f"unknown label(s) {unknown}; allowed: {sorted(self.labels)}")
        if self.labelled and self.task == "multiclass" and len(labels) != 1:
            raise BadSampleError(f"a multiclass row needs exactly one label, got {list(labels)}")
        text = (row["text"] or "").strip() if row["text"] is not None else ""
        if self.modality.text and not text:
            raise BadSampleError("empty text, but the modality uses text")
        image_path = None
        if self.modality.image:
            if not str(row["image_path"] or "").strip():
                raise BadSampleError("empty image_path, but the modality uses images")
            image_path = self.inputs.image_file(self.image_root, str(row["image_path"]).strip())
        return Sample(
            id=sample_id,
            text=text if self.modality.text else None,
            image_path=image_path,
            labels=labels,
            source=source,
        )
