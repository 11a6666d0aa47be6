"""ScienceQA as it ships: `problems.json` (keyed by pid), `pid_splits.json` (train/val/test/minitrain/
minival/minitest id lists) and `images/<split>/<pid>/image.png` for the questions that have an image.

Questions without an image are text-only samples in every modality; image-only ScienceQA is refused
(the question is text: with no text the model would be asked nothing).

Seed 002 trains on LLaVA's conversation files instead (`llava_train_QCM-LEA.json`, ...): `train_file`
reads the train split from such a file (its images under `train_image_dir`), and `prompt_style=llava`
asks the val/test questions exactly as that file's user turn is written (QCM, the image slot after the
options), so a model trained on any of those files is scored on problems.json by the answer letter.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from mmlearn.data.conversations.reader import ConversationReader
from mmlearn.data.conversations.sample import ConversationSample, Turn
from mmlearn.data.conversations.splits import ConversationSplits
from mmlearn.data.datamodule import SPLITS
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.data.text_files import read_text
from mmlearn.sample import Sample
from mmlearn.tasks.multiple_choice import LETTERS, MultipleChoiceTask

PID_LISTS = ("train", "val", "test", "minitrain", "minival", "minitest")
PROMPT_STYLES = ("mmlearn", "llava")


class ScienceQATask(MultipleChoiceTask):
    """`prompt_style=llava`: the prompt as LLaVA's convert_sqa_to_llava writes a user turn (double
    spaces collapsed, stripped); `max_new_tokens`: the generation budget of long answers (QCM-LEA's
    lecture and solution before "The answer is X."), instead of the answer template's length."""

    def __init__(self, instruction, answer_template, prompt_style: str, max_new_tokens: int | None) -> None:
        super().__init__(instruction, answer_template)
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"data.prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ValueError(f"data.max_new_tokens must be null or >= 1, got {max_new_tokens}")
        self.prompt_style = prompt_style
        self.max_new_tokens = max_new_tokens

    def prompt(self, sample: Sample) -> str:
        text = super().prompt(sample)
        return text.replace("  ", " ").strip() if self.prompt_style == "llava" else text


def load_json_object(path: Path, encoding: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        data = json.loads(read_text(path, encoding).lstrip("\ufeff"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


class ScienceQADataModule(ConversationSplits):
    """`splits` maps our train/val/test to lists of pid_splits.json, e.g. {train: train, val: minival}."""

    def __init__(
        self,
        *,
        problems_file: str,
        pid_splits_file: str,
        image_dir: str,
        splits: dict[str, str],
        instruction: str,
        answer_template: str,
        train_file: str | None = None,
        train_image_dir: str | None = None,
        prompt_style: str = "mmlearn",
        max_new_tokens: int | None = None,
        train_on: str = "all",
        **common,
    ) -> None:
        super().__init__(**common)
        if not self.modality.text:
            raise ValueError(
                "ScienceQA questions are text: modality=image would send no question; "
                "use modality=text or modality=text_image"
            )
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown or "train" not in splits:
            raise ValueError(f"data.splits needs a train entry and keys among {SPLITS}, got {dict(splits)}")
        bad = sorted(v for v in splits.values() if v not in PID_LISTS)
        if bad:
            raise ValueError(f"data.splits values must be lists of pid_splits.json {PID_LISTS}, got {bad}")
        self.problems_file = Path(problems_file)
        self.pid_splits_file = Path(pid_splits_file)
        self.image_dir = Path(image_dir)
        self.split_lists = dict(splits)
        self.instruction = instruction
        self.answer_template = answer_template
        self.train_file = None if train_file is None else Path(train_file)
        self.train_image_dir = Path(train_image_dir) if train_image_dir else self.image_dir / "train"
        self.prompt_style = prompt_style
        self.max_new_tokens = max_new_tokens
        self.train_on = train_on

    def build_task(self) -> MultipleChoiceTask:
        if self.prompt_style == "mmlearn" and self.max_new_tokens is None:
            return MultipleChoiceTask(self.instruction, self.answer_template)
        return ScienceQATask(self.instruction, self.answer_template, self.prompt_style, self.max_new_tokens)

    def conversation_splits(self) -> tuple[str, ...]:
        """Splits encoded as conversations: a conversation train file; every split with prompt_style=llava
        (the image slot after the text, where LLaVA's files put it)."""
        if self.prompt_style == "llava":
            return self.available_splits()
        return ("train",) if self.train_file is not None else ()

    def available_splits(self) -> tuple[str, ...]:
        return tuple(split for split in SPLITS if split in self.split_lists)

    @cached_property
    def problems(self) -> dict:
        return load_json_object(self.problems_file, self.inputs.encoding)

    @cached_property
    def pid_lists(self) -> dict:
        return load_json_object(self.pid_splits_file, self.inputs.encoding)

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        if split == "train" and self.train_file is not None:
            reader = ConversationReader(
                image_root=self.train_image_dir, fmt="auto", modality=self.modality, inputs=self.inputs
            )
            return reader.read(self.train_file)
        name = self.split_lists[split]
        pids = self.pid_lists.get(name)
        if not isinstance(pids, list):
            raise ValueError(
                f"{self.pid_splits_file}: key {name!r} (data.splits.{split}) is not a list of pids"
            )
        return self.inputs.collect(
            self._rows(name, pids),
            self._sample,
            file=f"{self.pid_splits_file}[{name}] -> {self.problems_file}",
        )

    def _rows(self, name: str, pids: list):
        for index, pid in enumerate(pids):
            problem = self.problems.get(str(pid))
            if not isinstance(problem, dict):
                where = f"{self.pid_splits_file}:{name}[{index}]"
                what = "is not in" if problem is None else "is not an object in"
                yield where, {"id": str(pid), "__error__": f"pid {pid!r} {what} {self.problems_file}"}
            else:
                yield f"{self.problems_file}:{pid}", {**problem, "id": str(pid)}

    def _sample(self, row: dict, source: str) -> Sample:
        question, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise BadSampleError("question is missing or empty")
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise BadSampleError(f"choices must be a list of strings, got {choices!r}")
        if not 2 <= len(choices) <= len(LETTERS):
            raise BadSampleError(f"a question needs 2 to {len(LETTERS)} choices, got {len(choices)}")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise BadSampleError(f"answer index {answer!r} is out of range for {len(choices)} choices")
        hint = row.get("hint")
        if hint is not None and not isinstance(hint, str):
            raise BadSampleError(f"hint must be a string or null, got {hint!r}")
        sample = Sample(
            id=row["id"],
            text=question.strip(),
            image_path=self._image_path(row) if self.modality.image else None,
            labels=(LETTERS[answer],),
            source=source,
            choices=tuple(choices),
            context=(hint or "").strip() or None,
        )
        return self._as_conversation(sample) if self.prompt_style == "llava" else sample

    def _as_conversation(self, sample: Sample) -> ConversationSample:
        """The question as LLaVA's file writes it: one user turn, its image slot after the text."""
        images = () if sample.image_path is None else (sample.image_path,)
        user = Turn("user", (self.task.prompt(sample), *[None] * len(images)))
        reply = Turn("assistant", (self.task.answer(sample),))
        fields = {k: getattr(sample, k) for k in sample.__dataclass_fields__}
        return ConversationSample(**fields, turns=(user, reply), images=images)

    def _image_path(self, row: dict) -> Path | None:
        image = row.get("image")
        if image is None:
            return None
        split = row.get("split")
        if not isinstance(image, str) or not isinstance(split, str):
            raise BadSampleError(f"image {image!r} / split {split!r} cannot name an image file")
        return self.inputs.image_file(self.image_dir, Path(split) / row["id"] / image)

    def record_settings(self) -> dict:
        with_image = {split: sum(s.image_path is not None for s in v) for split, v in self.splits.items()}
        settings = {"pid_lists": dict(self.split_lists), "questions_with_image": with_image}
        if self.train_file is not None or self.prompt_style != "mmlearn":
            settings.update(train_file=str(self.train_file), prompt_style=self.prompt_style)
        return settings
