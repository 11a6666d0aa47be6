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
        system: str | None,
        max_images: int | None,
        nested_images: bool,
        *,
        date_string: str,
    ) -> None:
        super().__init__(system=system, max_images=max_images, nested_images=nested_images)
        self.date_string = date_string

    def apply_template(self, processor, messages: list[dict]) -> str:
        return processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, date_string=self.date_string
        )

    def processor_call_kwargs(self) -> dict:
        return {"add_special_tokens": False}
