"""How a family turns (prompt, images, answer) into model inputs: the one place where families differ
in prompt format. Training and generation batches start from the same rendered prompt, so the model is
asked exactly the same question in training and in evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100
Shot = tuple[str, list, str]  # (prompt, images, answer) of one in-context example


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _user(prompt: str, n_images: int) -> dict:
    return {"role": "user", "content": [{"type": "image"}] * n_images + [_text(prompt)]}


class ChatTemplatePrompt:
    """Families with a chat template (Qwen2-VL, Qwen2.5-VL, SmolVLM, Mllama, LLaVA-HF): images first,
    then text, in one user turn; the answer is the assistant's reply followed by the end token."""

    def __init__(self, system: str | None, max_images: int | None, nested_images: bool) -> None:
        """The values come from the family's conf/model/<family>.yaml (`prompt:`), their only home."""
        self.system = system
        self.max_images = max_images
        self.nested_images = nested_images  # processors that take one image list per prompt

    def render(self, processor, prompt: str, n_images: int, shots: Sequence[Shot] = ()) -> str:
        """Few-shot examples become earlier user/assistant turns, each with its own images."""
        messages = [{"role": "system", "content": [_text(self.system)]}] if self.system else []
        for shot_prompt, shot_images, answer in shots:
            messages.append(_user(shot_prompt, len(shot_images)))
            messages.append({"role": "assistant", "content": [_text(answer)]})
        messages.append(_user(prompt, n_images))
        return self.apply_template(processor, messages)

    def apply_template(self, processor, messages: list[dict]) -> str:
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def processor_call_kwargs(self) -> dict:
        """Extra arguments for the processor call (e.g. no special tokens when the template has them)."""
        return {}

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        """The supervised tokens of one answer: the reply as the template renders it, then the end token."""
        return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    def check_images(self, images: list[list]) -> None:
        most = max((len(group) for group in images), default=0)
        if self.max_images is not None and most > self.max_images:
            raise ValueError(
                f"a prompt has {most} images but this model family takes at most {self.max_images}"
            )

    def _processor_images(self, images: list[list]):
        if not any(images):
            return None
        if self.nested_images:
            return images
        return [image for group in images for image in group]

    def encode_prompts(
        self, processor, prompts: list[str], images: list[list], padding_side: str, shots=None
    ):
        shots = shots or [()] * len(prompts)
        texts = [
            self.render(processor, p, len(group), row_shots)
            for p, group, row_shots in zip(prompts, images, shots, strict=True)
        ]
        # shot images come first, in the order their turns appear
        images = [
            [image for _, shot_images, _ in row_shots for image in shot_images] + list(group)
            for group, row_shots in zip(images, shots, strict=True)
        ]
        self.check_images(images)
        return processor(
            text=texts,
            images=self._processor_images(images),
            padding=True,
            padding_side=padding_side,
            return_tensors="pt",
            **self.processor_call_kwargs(),
        )

    def encode(
        self,
        processor,
        prompts: list[str],
        images: list[list],
        answers: list[str] | None = None,
        shots: list[Sequence[Shot]] | None = None,
    ):
        """Left-padded prompts for `generate`, or (with answers) a training batch whose labels cover
        only the answer and end tokens. `shots` (one list per prompt) are rendered as prior turns."""
        batch = self.encode_prompts(processor, prompts, images, padding_side="left", shots=shots)
        if answers is None:
            return dict(batch)
        tokenizer = processor.tokenizer
        answer_ids = [self.answer_ids(tokenizer, answer) for answer in answers]
        return append_answers(batch, answer_ids, tokenizer.pad_token_id)


def append_answers(prompts, answer_ids: list[list[int]], pad_token_id: int) -> dict:
    """Prompt tokens (padding removed) + answer tokens, right-padded; labels mask all but the answer.
    Every other per-token tensor (Mllama's cross-attention mask, IDEFICS's image attention mask, token
    types, ...) is extended over the answer with the prompt's last value, as `generate` extends it for
    the tokens it produces: an answer token attends to the images exactly as in generation. Padding
    positions get zeros."""
    prompt_ids = prompts["input_ids"]
    keep = prompts["attention_mask"].bool()
    n, seq = prompt_ids.shape
    per_token = [
        k
        for k, v in prompts.items()
        if torch.is_tensor(v) and v.dim() >= 2 and tuple(v.shape[:2]) == (n, seq)
    ]
    rows = [prompt_ids[i][keep[i]].tolist() + answer_ids[i] for i in range(n)]
    width = max(len(row) for row in rows)
    batch = {k: v for k, v in prompts.items() if k not in per_token}
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    extra = {
        k: torch.zeros((n, width, *prompts[k].shape[2:]), dtype=prompts[k].dtype)
        for k in per_token
        if k not in ("input_ids", "attention_mask")
    }
    for i, row in enumerate(rows):
        n_prompt = int(keep[i].sum())
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        labels[i, n_prompt : len(row)] = torch.tensor(answer_ids[i])
        for k, tensor in extra.items():
            prompt_values = prompts[k][i][keep[i]]
            tensor[i, :n_prompt] = prompt_values
            tensor[i, n_prompt : len(row)] = prompt_values[-1]
    batch.update(extra, input_ids=input_ids, attention_mask=attention, labels=labels)
    return batch
