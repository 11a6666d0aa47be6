"""Llama 3.2 Vision: its chat template starts with <|begin_of_text|> and its tokenizer adds one too,
so the rendered prompt is tokenised without special tokens (as in the model card); otherwise every
prompt starts with two bos tokens, in training and in generation alike."""

from __future__ import annotations

from mmlearn.models.prompting import ChatTemplatePrompt


class MllamaPrompt(ChatTemplatePrompt):
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
