"""IDEFICS (v1): interleaved prompt lists. The base checkpoints are not instruction-tuned; their own
examples use `User:<image>question\nAssistant: answer</s>`, which is the layout used here."""

from __future__ import annotations

from mmlearn.models.prompting import append_answers


class IdeficsPrompt:
    """`["User:", *images, prompt + "\\nAssistant:"]`, answer + `</s>`.

    A text token cross-attends only to the most recent image before it, so with the images placed
    before the question the text sees only the last one: `max_images` is 1 unless the layout changes.
    """

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images

    def check_images(self, images: list[list]) -> None:
        most = max((len(group) for group in images), default=0)
        if most > self.max_images:
            raise ValueError(
                f"a prompt has {most} images but this model family takes at most {self.max_images}"
            )

    def encode_prompts(self, processor, prompts: list[str], images: list[list]):
        self.check_images(images)
        segments = [
            ["User:", *group, f"{prompt}\nAssistant:"] for prompt, group in zip(prompts, images, strict=True)
        ]
        # no <end_of_utterance> between text segments (a text-only prompt is two text segments)
        return processor(
            text=segments,
            padding=True,
            padding_side="left",
            add_end_of_utterance_token=False,
            return_tensors="pt",
        )

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        """The supervised tokens of one answer: the answer, then `</s>`."""
        return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    def encode(self, processor, prompts: list[str], images: list[list], answers: list[str] | None = None):
        """Left-padded prompts for `generate`, or (with answers) a training batch whose labels cover
        only the answer and `</s>`. Answer tokens cross-attend to the images the last prompt token
        attends to, exactly as generated tokens do (`generate` repeats the last row of the mask)."""
        prompt_batch = self.encode_prompts(processor, prompts, images)
        if answers is None:
            return dict(prompt_batch)
        tokenizer = processor.tokenizer
        answer_ids = [self.answer_ids(tokenizer, answer) for answer in answers]
        batch = append_answers(prompt_batch, answer_ids, tokenizer.pad_token_id)
        n_prompt = prompt_batch["attention_mask"].sum(dim=1).tolist()
        n_total = batch["attention_mask"].sum(dim=1).tolist()
        last = prompt_batch["image_attention_mask"][
            :, -1
        ]  # left padding: the last column is the last prompt token
        for i, (start, end) in enumerate(zip(n_prompt, n_total, strict=True)):
            batch["image_attention_mask"][i, start:end] = last[i]
        return batch
