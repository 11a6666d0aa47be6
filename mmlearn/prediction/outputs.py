"""The answers file `predict.py output=...` writes, atomically: JSONL (one record a line, as
predictions/<split>.jsonl has them, without gold labels) or CSV (one row a record: `parsed` as a JSON
list, and one `scores.<label>` column per label when the decoder scores labels)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mmlearn.io import write_atomic, write_jsonl

FORMATS = (".jsonl", ".csv")
COLUMNS = ("id", "output", "parsed", "parse_ok", "prompt_id")


def check_output(path: Path) -> None:
    if path.suffix not in FORMATS:
        raise ValueError(
            f"output={path}: the answers are written as {' or '.join(FORMATS)}; name such a file"
        )
    if path.is_dir():
        raise ValueError(f"output={path} is a folder: name the file to write")


def write_output(path: Path, records: list[dict], labels: list[str]) -> Path:
    if path.suffix == ".jsonl":
        return write_jsonl(path, records)
    return write_atomic(path, to_csv(records, labels))


def to_csv(records: list[dict], labels: list[str]) -> str:
    scored = any(r.get("scores") is not None for r in records)
    header = [*COLUMNS, *(f"scores.{label}" for label in labels if scored)]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for record in records:
        row = [record.get("id"), record.get("output"), json.dumps(record.get("parsed"), ensure_ascii=False)]
        row += [str(record.get("parse_ok")).lower(), record.get("prompt_id")]
        scores = record.get("scores") or {}
        row += [scores.get(label) for label in labels] if scored else []
        writer.writerow(row)
    return buffer.getvalue()
