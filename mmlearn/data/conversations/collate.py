"""Batches of whole conversations: every turn encoded through the family's chat template, the loss on
the assistant turns `data.train_on` picks; evaluation prompts end where the last reply begins."""

from __future__ import annotations

from mmlearn.data.collate import PromptCollator, prompt_id
from mmlearn.data.conversations.sample import ConversationSample, as_turns
from mmlearn.data.images import load_rgb
from mmlearn.models.prompting import ChatTemplatePrompt, encode_conversations
from mmlearn.sample import Sample


def check_conversation_format(prompt_format) -> None:
    if not isinstance(prompt_format, ChatTemplatePrompt):
        raise ValueError(
            f"conversation samples need a chat-template model family; {type(prompt_format).__name__} "
            "(model.prompt) renders single prompts only"
        )


class ConversationPromptCollator(PromptCollator):
    """Every turn up to the last reply, left-padded for `generate`. A plain sample (a dataset that
    trains on conversations but evaluates its own questions) is a one-turn conversation."""

    with_replies = False

    def __init__(self, processor, prompt_format, task, *, train_on: str, inputs=None) -> None:
        check_conversation_format(prompt_format)
        super().__init__(processor, prompt_format, task, inputs=inputs)
        self.train_on = train_on

    def images(self, samples: list[Sample]) -> list[list]:
        load = load_rgb if self.inputs is None else self.inputs.load_rgb
        return [
            [load(path) for path in s.images] if isinstance(s, ConversationSample) else super().images([s])[0]
            for s in samples
        ]

    def turns(self, sample: Sample, n_images: int):
        if isinstance(sample, ConversationSample):
            return [(turn.role, turn.parts) for turn in sample.turns]
        return [
            (t.role, t.parts) for t in as_turns(self.task.prompt(sample), n_images, self.task.answer(sample))
        ]

    def __call__(self, samples: list[Sample]) -> dict:
        samples, images, skipped = self.loadable(samples)
        conversations = [self.turns(s, len(group)) for s, group in zip(samples, images, strict=True)]
        inputs = encode_conversations(
            self.prompt_format,
            self.processor,
            conversations,
            images,
            train_on=self.train_on,
            with_replies=self.with_replies,
        )
        batch = {
            "inputs": inputs,
            "samples": samples,
            "ids": [s.id for s in samples],
            "prompts": [self.task.prompt(s) for s in samples],
            "images": images,
            "shots": None,
            "shot_ids": None,
            "prompt_ids": [prompt_id(self._fingerprint, self.task, s, []) for s in samples],
        }
        if skipped:
            batch["skipped"] = [(self.split, record) for record in skipped]
        return batch


class ConversationTrainCollator(ConversationPromptCollator):
    """The whole conversation, right-padded; labels on the replies (all, or the last) and nothing else."""

    with_replies = True
