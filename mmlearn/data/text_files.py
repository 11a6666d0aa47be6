"""Text files in the configured encoding (`data.encoding`), with bytes that do not decode kept as
markers, so the row holding them is named and refused (or skipped), never the whole file unnamed.

Undecodable bytes become lone surrogates (Python's `surrogateescape`); valid text in any encoding never
holds one, and no tokenizer accepts one, so `undecodable` finds them in a row or a sample.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mmlearn.data.sample import BadSampleError


def check_encoding(encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError as err:
        raise ValueError(f"data.encoding={encoding!r} is not a codec Python knows") from err
    return encoding


def open_text(path: Path, encoding: str, newline: str | None = None) -> IO[str]:
    return Path(path).open(encoding=encoding, errors="surrogateescape", newline=newline)


def json_lines(path: Path, encoding: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a malformed line or one that is
    not an object becomes an `{"__error__": ...}` row, for the reader's bad-row policy to name."""
    with open_text(path, encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.lstrip("\ufeff"))
            except json.JSONDecodeError as err:
                row = {"__error__": f"malformed JSON line: {err}"}
            yield number, row if isinstance(row, dict) else {"__error__": "line is not a JSON object"}


def read_text(path: Path, encoding: str) -> str:
    with open_text(path, encoding) as handle:
        return handle.read()


def _first_surrogate(text: str) -> int | None:
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            return index
    return None


def undecodable(value, encoding: str) -> str | None:
    """A description of the first undecodable byte in a string, or in the strings of a list or dict."""
    if isinstance(value, str):
        index = _first_surrogate(value)
        if index is None:
            return None
        char = value[index]
        byte = f"byte 0x{ord(char) - 0xDC00:02x}" if "\udc80" <= char <= "\udcff" else f"{char!r}"
        return f"{byte} in {value[max(0, index - 20) : index]!r}... is not valid {encoding} (data.encoding)"
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    for item in items:
        found = undecodable(item, encoding)
        if found:
            return found
    return None


def refuse_undecodable(text: str, path: Path, encoding: str) -> str:
    """For files read whole and used together (a header, a label list): any bad byte stops the read."""
    found = undecodable(text, encoding)
    if found:
        index = _first_surrogate(text)
        line = text.count("\n", 0, index) + 1
        raise BadSampleError(f"{path}:{line}: {found}; set data.encoding to the file's encoding")
    return text
