"""Llama 3.2 Vision's chat template, tamed for training.

- The template starts with <|begin_of_text|> and the tokenizer adds one too, so the rendered prompt is
  tokenised without special tokens (as in the model card); otherwise every prompt starts with two.
- For text-only prompts the template writes a system turn with today's date (`strftime_now`), so the
  same sample would get a different prompt on every day; the date is pinned instead.
"""

from __future__ import annotations

from mmlearn.models.prompting import ChatTemplatePrompt


class MllamaPrompt(ChatTemplatePrompt):
    def __init__(
        self,
        system: str | None = None,
        max_images: int | None = None,
        nested_images: bool = False,
        *,
        date_string: str,
    ) -> None:
        super().__init__(system=system, max_images=max_images, nested_images=nested_images)
        self.date_string = date_string

    def render(self, processor, prompt: str, n_images: int) -> str:
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        if self.system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system}]})
        return processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, date_string=self.date_string
        )

    def encode_prompts(self, processor, prompts: list[str], images: list[list], padding_side: str):
        self.check_images(images)
        texts = [self.render(processor, p, len(group)) for p, group in zip(prompts, images, strict=True)]
        return processor(
            text=texts,
            images=self._processor_images(images),
            padding=True,
            padding_side=padding_side,
            add_special_tokens=False,
            return_tensors="pt",
        )
