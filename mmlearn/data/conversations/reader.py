"""One conversation file (a JSON list, or JSONL) read into samples under the shared bad-row rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from mmlearn.data.conversations.formats import check_format, parse_row
from mmlearn.data.conversations.sample import ConversationSample, Turn
from mmlearn.data.datasets._files import read_json, require_file
from mmlearn.data.modality import Modality
from mmlearn.data.policy import InputPolicy
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.data.text_files import json_lines


def conversation_rows(path: Path, encoding: str) -> Iterator[tuple[str, dict]]:
    """(source, row): "file:line" for JSONL, "file:n" (1-based item) for a JSON list."""
    path = require_file(Path(path), "conversation file")
    if path.suffix == ".jsonl":
        for number, row in json_lines(path, encoding):
            yield f"{path}:{number}", row
        return
    items = read_json(path, "conversation file", encoding)
    if not isinstance(items, list):
        raise ValueError(
            f"{path}: a conversation file holds a JSON list (or is .jsonl), found {type(items).__name__}"
        )
    for number, row in enumerate(items, start=1):
        yield f"{path}:{number}", row if isinstance(row, dict) else {"__error__": "item is not a JSON object"}


class ConversationReader:
    """Rows of any of the three layouts (data.format, or detected per row) into `ConversationSample`s.
    With a text-only modality the image slots are dropped and no image is opened; `check_answer`
    (the task's `answer_problem`) refuses a row whose reply the task cannot score."""

    def __init__(
        self,
        *,
        image_root: Path,
        fmt: str,
        modality: Modality,
        inputs: InputPolicy,
        check_answer: Callable[[str], str | None] | None = None,
    ) -> None:
        if not modality.text:
            raise ValueError(
                "conversations are text: modality=image would send no turn; use text or text_image"
            )
        self.image_root = Path(image_root)
        self.fmt = check_format(fmt)
        self.modality = modality
        self.inputs = inputs
        self.check_answer = check_answer

    def read(self, path: Path) -> tuple[list[ConversationSample], SplitReport]:
        rows = conversation_rows(Path(path), self.inputs.encoding)
        return self.inputs.collect(rows, self._sample, file=str(path), count_labels=False)

    def _sample(self, row: dict, source: str) -> ConversationSample:
        turns, refs = parse_row(row, self.fmt)
        if self.modality.image:
            images = tuple(self.inputs.image_file(self.image_root, ref) for ref in refs)
        else:
            turns = [Turn(t.role, tuple(p for p in t.parts if p is not None)) for t in turns]
            if any(not t.parts for t in turns):
                raise BadSampleError("a turn holds only images, but the modality is text")
            images = ()
        reply = turns[-1].text
        problem = None if self.check_answer is None else self.check_answer(reply)
        if problem:
            raise BadSampleError(problem)
        user = next(t for t in reversed(turns) if t.role == "user")
        raw_id = row.get("id")
        return ConversationSample(
            id=str(raw_id) if raw_id not in (None, "") else source.rsplit(":", 1)[1],
            text=user.text,
            image_path=images[0] if images else None,
            labels=(reply,),
            source=source,
            turns=tuple(turns),
            images=images,
        )
