"""Small file readers shared by the dataset modules: every row comes with its "file:line" source."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from mmlearn.data.sample import BadSampleError


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def id_lines(path: Path) -> Iterator[tuple[str, dict]]:
    """One id a line (blank lines ignored), as (source, {"id": ...}) rows."""
    with require_file(path, "split file").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield f"{path}:{number}", {"id": line.strip()}


def jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """One JSON object a line; a malformed line becomes an error row for the shared loop."""
    with require_file(path, "split file").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                row = {"__error__": f"malformed JSON line: {err}"}
            if not isinstance(row, dict):
                row = {"__error__": "line is not a JSON object"}
            yield f"{path}:{number}", row


def tsv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    """Tab-separated rows with a header. Quotes are plain characters (tweets contain them), so the
    file is read with QUOTE_NONE; a row with the wrong number of fields becomes an error row."""
    with require_file(path, "split file").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise BadSampleError(f"{path}:1: missing column(s) {missing}; found {header}")
        for fields in reader:
            source = f"{path}:{reader.line_num}"
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                yield source, {"__error__": f"malformed row: {len(fields)} fields, header has {len(header)}"}
                continue
            yield source, dict(zip(header, fields, strict=True))


def read_json(path: Path, what: str):
    try:
        return json.loads(require_file(path, what).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON: {err}") from err
