"""What a datamodule needs when some of its splits hold conversations: their collators and their
exact token counts. Mixed into `ConversationDataModule` and into datasets that train on conversation
files (ScienceQA with LLaVA's files)."""

from __future__ import annotations

from PIL import Image

from mmlearn.data.conversations.collate import (
    ConversationPromptCollator,
    ConversationTrainCollator,
    check_conversation_format,
)
from mmlearn.data.conversations.sample import ConversationSample
from mmlearn.data.datamodule import VLMDataModule
from mmlearn.data.lengths import image_size
from mmlearn.data.sample import BadSampleError, skip_record
from mmlearn.models.prompting import encode_conversations


class ConversationLengths:
    """Training tokens of each conversation, exact: its turns encoded with blank images of its images'
    sizes (read from the headers), so every image costs what the family's processor makes of it."""

    def __init__(self, processor, prompt_format, train_on: str) -> None:
        self.processor, self.prompt_format, self.train_on = processor, prompt_format, train_on

    def __call__(self, samples: list[ConversationSample]) -> list[int | str]:
        """Each sample's token count, or why the model family cannot take it (e.g. more images than
        `model.prompt.max_images`), for the datamodule to raise or skip under its bad-sample rule."""
        out: list[int | str] = []
        for sample in samples:
            blanks = [Image.new("RGB", image_size(path), (128, 128, 128)) for path in sample.images]
            turns = [(t.role, t.parts) for t in sample.turns]
            try:
                batch = encode_conversations(
                    self.prompt_format, self.processor, [turns], [blanks], train_on=self.train_on
                )
            except ValueError as err:
                out.append(str(err))
                continue
            out.append(int(batch["attention_mask"].sum()))
        return out


class ConversationSplits(VLMDataModule):
    """For a datamodule whose training split holds conversations: their collators and token counts.
    Splits listed in `conversation_splits()` are encoded turn by turn; the others as every dataset's."""

    train_on: str

    def conversation_splits(self) -> tuple[str, ...]:
        raise NotImplementedError

    def connect(self, processor, prompt_format, shots=None) -> None:
        if "train" not in self.conversation_splits():
            return super().connect(processor, prompt_format, shots)
        check_conversation_format(prompt_format)
        if shots is not None:
            raise ValueError("in-context examples (shots) are not supported with conversation training files")
        self.processor, self.prompt_format, self.shots = processor, prompt_format, None
        if "train" in self.splits and "train" not in self.lengths:
            samples = self.splits["train"]
            lengths = ConversationLengths(processor, prompt_format, self.train_on)(samples)
            kept = [(s, n) for s, n in zip(samples, lengths, strict=True) if self._encodable(s, n)]
            self._keep_within_max_length("train", [s for s, _ in kept], [n for _, n in kept])

    def _encodable(self, sample: ConversationSample, length: int | str) -> bool:
        if not isinstance(length, str):
            return True
        if self.on_bad_sample == "error":
            raise BadSampleError(
                f"{sample.source}: {length} (set data.on_bad_sample=skip to skip and count such rows)"
            )
        self.reports["train"].skipped.append(skip_record(sample.source, sample.id, "model", length))
        return False

    def collator(self, split: str, train: bool):
        if split not in self.conversation_splits():
            return super().collator(split, train)
        kind = ConversationTrainCollator if train else ConversationPromptCollator
        return kind(self.processor, self.prompt_format, self.task, train_on=self.train_on, inputs=self.inputs)
