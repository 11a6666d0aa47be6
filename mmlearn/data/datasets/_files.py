"""Small file readers shared by the dataset modules: every row comes with its "file:line" source."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from mmlearn.data.sample import BadSampleError
from mmlearn.data.text_files import json_lines, open_text, read_text, refuse_undecodable


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def id_lines(path: Path, encoding: str) -> Iterator[tuple[str, dict]]:
    """One id a line (blank lines ignored), as (source, {"id": ...}) rows."""
    with open_text(require_file(path, "split file"), encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield f"{path}:{number}", {"id": line.strip()}


def jsonl_rows(path: Path, encoding: str) -> Iterator[tuple[str, dict]]:
    """One JSON object a line; a malformed line becomes an error row for the shared loop."""
    for number, row in json_lines(require_file(path, "split file"), encoding):
        yield f"{path}:{number}", row


def tsv_rows(path: Path, columns: tuple[str, ...], encoding: str) -> Iterator[tuple[str, dict]]:
    """Tab-separated rows with a header. Quotes are plain characters (tweets contain them), so the
    file is read with QUOTE_NONE; a row with the wrong number of fields becomes an error row."""
    with open_text(require_file(path, "split file"), encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) or []
        refuse_undecodable("\t".join(header), path, encoding)
        header = [header[0].removeprefix("\ufeff"), *header[1:]] if header else header
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


def read_json(path: Path, what: str, encoding: str):
    """A whole JSON document; undecodable bytes in it surface in the rows or samples read from it."""
    try:
        return json.loads(read_text(require_file(path, what), encoding).lstrip("\ufeff"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON: {err}") from err
