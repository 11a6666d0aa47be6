"""Seed 001's generic layout: CSV or JSONL rows with `text`, `image_path`, `labels`."""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Iterator
from pathlib import Path

from mmlearn.data.images import check_image
from mmlearn.data.modality import Modality
from mmlearn.data.reading import check_on_bad_sample, collect_samples
from mmlearn.data.sample import BadSampleError, Sample, SplitReport

REQUIRED_COLUMNS = ("text", "image_path", "labels")
UNLABELLED_COLUMNS = ("text", "image_path")  # a predict file: `labels` may be absent (it is not read)


def iter_rows(path: Path, required: tuple[str, ...] = REQUIRED_COLUMNS) -> Iterator[tuple[int, dict]]:
    """(row number, row) pairs; CSV rows count from 2 (line 1 is the header), JSONL from 1."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    yield number, {"__error__": f"malformed JSON line: {err}"}
                    continue
                yield number, row if isinstance(row, dict) else {"__error__": "line is not a JSON object"}
        return
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BadSampleError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        for number, row in enumerate(reader, start=2):
            if None in row:
                yield (
                    number,
                    {
                        "__error__": f"row has {len(row) - 1 + len(row[None])} fields, header has {len(row) - 1}"
                    },
                )
                continue
            yield number, row


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
        on_bad_sample: str,
        labelled: bool = True,
    ) -> None:
        check_on_bad_sample(on_bad_sample)
        self.image_root = Path(image_root)
        self.labels = set(labels)
        self.task = task
        self.modality = modality
        self.on_bad_sample = on_bad_sample
        self.labelled = labelled
        self.required = REQUIRED_COLUMNS if labelled else UNLABELLED_COLUMNS

    def read(self, path: Path) -> tuple[list[Sample], SplitReport]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"split file not found: {path}")
        rows = ((f"{path}:{number}", row) for number, row in iter_rows(path, self.required))
        return collect_samples(rows, self._sample, file=str(path), on_bad_sample=self.on_bad_sample)

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
            image_path = self.image_root / str(row["image_path"]).strip()
            check_image(image_path)
        return Sample(
            id=sample_id,
            text=text if self.modality.text else None,
            image_path=image_path,
            labels=labels,
            source=source,
        )
