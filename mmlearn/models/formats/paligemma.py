"""PaliGemma (1 and 2): no chat template. The processor turns `"<image>" + prompt` into image tokens,
`<bos>`, the prompt and a newline, and appends an answer passed as `suffix=` (plus `<eos>`) with
`token_type_ids` 1: the prefix attends bidirectionally, the answer causally."""

from __future__ import annotations


class PaliGemmaPrompt:
    """One image per prompt for the -pt checkpoints; every prompt needs its image."""

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images

    def check_images(self, images: list[list]) -> None:
        counts = [len(group) for group in images]
        if 0 in counts:
            raise ValueError(
                "a prompt has no image, but PaliGemma needs an image in every prompt: text-only data "
                "(modality=text, or samples without an image) cannot be used with this model family"
            )
        if max(counts, default=0) > self.max_images:
            raise ValueError(
                f"a prompt has {max(counts)} images but this model family takes at most {self.max_images}"
            )

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        """The supervised tokens of one answer, as the processor makes them from `suffix=`: the
        second sequence of a text pair, `answer + <eos>` (its token type 1)."""
        encoded = tokenizer("", text_pair=answer + tokenizer.eos_token, return_token_type_ids=True)
        return [
            t for t, kind in zip(encoded["input_ids"], encoded["token_type_ids"], strict=True) if kind == 1
        ]

    def encode(self, processor, prompts: list[str], images: list[list], answers: list[str] | None = None):
        """Left-padded prompts for `generate`, or (with answers) a right-padded training batch whose
        labels cover only the answer and `<eos>`, and whose `token_type_ids` mark the answer (without
        them PaliGemma attends bidirectionally over the answer too)."""
        self.check_images(images)
        texts = [
            processor.image_token * len(group) + prompt for prompt, group in zip(prompts, images, strict=True)
        ]
        flat = [image for group in images for image in group]
        if answers is None:
            batch = processor(text=texts, images=flat, padding=True, padding_side="left", return_tensors="pt")
            batch.pop("labels", None)  # all -100 without a suffix
            return dict(batch)
        batch = processor(
            text=texts, images=flat, suffix=answers, padding=True, padding_side="right", return_tensors="pt"
        )
        return dict(batch)
