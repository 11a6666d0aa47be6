"""`data=conversations`: train, validate and test on conversation files (LLaVA, ShareGPT, OpenAI
messages), with the loss on every assistant turn or the last, and free-form replies scored by
task=generation's metrics."""

from __future__ import annotations

from pathlib import Path

from mmlearn.data.conversations.formats import check_format
from mmlearn.data.conversations.reader import ConversationReader
from mmlearn.data.conversations.splits import ConversationSplits
from mmlearn.data.datamodule import SPLITS
from mmlearn.data.sample import SplitReport
from mmlearn.models.prompting import TRAIN_ON
from mmlearn.sample import Sample
from mmlearn.tasks.generation import GenerationTask


class ConversationDataModule(ConversationSplits):
    """Conversation files per split (JSON list or JSONL; `format` auto-detected per row or given);
    image paths relative to `image_root` unless absolute. The task is task=generation: the last reply
    is what validation and test generate and score."""

    def __init__(
        self,
        *,
        train_file: str | None,
        val_file: str | None,
        test_file: str | None,
        image_root: str,
        format: str,
        train_on: str,
        metrics: list[str],
        parser: str | None,
        max_new_tokens: int,
        **common,
    ) -> None:
        super().__init__(**common)
        if train_on not in TRAIN_ON:
            raise ValueError(f"data.train_on must be one of {TRAIN_ON}, got {train_on!r}")
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.image_root = image_root
        self.format = format
        self.train_on = train_on
        self.task_settings = (None, list(metrics), parser, max_new_tokens)  # the file holds the prompts
        check_format(format)
        if not self.modality.text:
            raise ValueError(
                "conversations are text: modality=image would send no turn; use text or text_image"
            )

    def build_task(self) -> GenerationTask:
        return GenerationTask(*self.task_settings)

    def available_splits(self) -> tuple[str, ...]:
        return tuple(split for split in SPLITS if self.files[split] is not None)

    def conversation_splits(self) -> tuple[str, ...]:
        return self.available_splits()

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        reader = ConversationReader(
            image_root=Path(self.image_root),
            fmt=self.format,
            modality=self.modality,
            inputs=self.inputs,
            check_answer=self.task.answer_problem,
        )
        return reader.read(Path(self.files[split]))

    def record_settings(self) -> dict:
        return {"format": self.format, "train_on": self.train_on}
