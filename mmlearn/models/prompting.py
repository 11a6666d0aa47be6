"""Rendering one (image?, prompt) turn into the text a family's processor expects."""

from __future__ import annotations


class ChatTemplatePrompt:
    """Families with a chat template (Qwen2-VL, Qwen2.5-VL, SmolVLM, Mllama, LLaVA-HF): image first, then text."""

    def __init__(self, system: str | None = None) -> None:
        self.system = system

    def render(self, processor, prompt: str, has_image: bool) -> str:
        content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        if self.system:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system}]})
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
