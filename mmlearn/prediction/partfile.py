"""The part file a prediction streams its answers to, `<output>.part` (one JSON record a line, flushed
and synced after every batch), with its key `<output>.part.json`: what it answers (the input's content
hash, the run, the decoder). A killed run leaves both; the next run with the same key continues after
the last complete line (a half-written last line is cut off and its rows answered again); with another
key it refuses, naming what changed, unless `resume=false` starts over."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from mmlearn.io import write_json

log = logging.getLogger(__name__)


def input_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative path, size, modification time)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(
                f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
        return digest.hexdigest()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PartFile:
    """`records`: the answers already written, in order. `append` adds a batch durably."""

    def __init__(self, output: Path, key: dict, resume: bool) -> None:
        self.path = output.with_name(output.name + ".part")
        self.key_path = output.with_name(output.name + ".part.json")
        self.records: list[dict] = []
        if resume and self.path.exists():
            self._continue(key)
        else:
            self.discard()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.key_path, key)
            self.path.touch()
        self._handle = self.path.open("a", encoding="utf-8")

    def _continue(self, key: dict) -> None:
        saved = json.loads(self.key_path.read_text(encoding="utf-8")) if self.key_path.is_file() else None
        if saved != key:
            changed = sorted(k for k in {*key, *(saved or {})} if (saved or {}).get(k) != key.get(k))
            why = f"{self.key_path} is missing" if saved is None else f"{', '.join(changed)} differ"
            raise ValueError(
                f"{self.path} was left by a prediction of something else ({why}): resume=false starts "
                "over and discards it, or choose another output="
            )
        self.records = self._complete_lines()
        log.info("resuming %s: %d rows already answered", self.path, len(self.records))

    def _complete_lines(self) -> list[dict]:
        """The records of the complete lines; a last line without its newline (the run was killed while
        writing it) is cut off the file."""
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("%s: dropping a half-written last line (%d bytes)", self.path, len(data) - end)
            with self.path.open("r+b") as handle:
                handle.truncate(end)
        records = []
        for number, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{self.path}:{number}: not a JSON record ({err}); resume=false starts over"
                ) from err
        return records

    def append(self, records: list[dict]) -> None:
        self._handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.records.extend(records)

    def close(self) -> None:
        self._handle.close()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.key_path.unlink(missing_ok=True)
