"""Batches for training (prompt + answer, loss on answer tokens only) and for generation (prompt only).

Both start from the same processor call on the same rendered prompt, so the model is asked exactly the
same question in training and in evaluation.
"""

from __future__ import annotations

import torch

from mmlearn.data.images import load_rgb

IGNORE_INDEX = -100


class PromptCollator:
    """Left-padded prompts with their images, ready for `generate`."""

    def __init__(self, processor, renderer, task) -> None:
        self.processor = processor
        self.renderer = renderer
        self.task = task

    def encode_prompts(self, items: list[dict], padding_side: str):
        images = [load_rgb(item["image_path"]) for item in items if item["image_path"] is not None]
        if images and len(images) != len(items):
            raise ValueError("a batch mixes samples with and without images")
        texts = [
            self.renderer.render(self.processor, self.task.prompt(item["text"]), bool(images))
            for item in items
        ]
        return self.processor(
            text=texts, images=images or None, padding=True, padding_side=padding_side, return_tensors="pt"
        )

    def __call__(self, items: list[dict]) -> dict:
        return {
            "inputs": dict(self.encode_prompts(items, padding_side="left")),
            "ids": [item["id"] for item in items],
            "gold": [item["labels"] for item in items],
        }


class TrainCollator(PromptCollator):
    """Prompt tokens (from the processor) + answer tokens + end token; labels mask all but the answer."""

    def __call__(self, items: list[dict]) -> dict:
        prompts = self.encode_prompts(items, padding_side="left")
        tokenizer = self.processor.tokenizer
        answers = [
            tokenizer(self.task.target(item["labels"]), add_special_tokens=False)["input_ids"]
            + [tokenizer.eos_token_id]
            for item in items
        ]
        prompt_ids = prompts["input_ids"]
        keep = prompts["attention_mask"].bool()
        per_token = [k for k, v in prompts.items() if torch.is_tensor(v) and v.shape == prompt_ids.shape]
        rows = [prompt_ids[i][keep[i]].tolist() + answers[i] for i in range(len(items))]
        width = max(len(row) for row in rows)
        batch = {k: v for k, v in prompts.items() if k not in per_token}
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        extra = {
            k: torch.zeros((len(rows), width), dtype=prompts[k].dtype)
            for k in per_token
            if k not in ("input_ids", "attention_mask")
        }
        for i, row in enumerate(rows):
            n_prompt = int(keep[i].sum())
            input_ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            labels[i, n_prompt : len(row)] = torch.tensor(answers[i])
            for k, tensor in extra.items():
                tensor[i, :n_prompt] = prompts[k][i][keep[i]]
        batch.update(extra, input_ids=input_ids, attention_mask=attention, labels=labels)
        return {
            "inputs": batch,
            "ids": [item["id"] for item in items],
            "gold": [item["labels"] for item in items],
        }
