"""Chat templates whose generation prompt ends in a role tag and a colon (LLaVA-1.5's "ASSISTANT:",
SmolVLM's "Assistant:"): the template renders an assistant turn as "ASSISTANT: reply", so the trained
reply starts with a space, or the model learns a token sequence it never produced in pre-training."""

from __future__ import annotations

from mmlearn.models.prompting import ChatTemplatePrompt


def reply_ids(tokenizer, answer: str, anchor: str = ":") -> list[int]:
    """Tokens of " answer" as they follow the colon in the rendered conversation.

    Tokenising " answer" alone is not enough: sentencepiece (Llama-2) tokenizers prepend their own
    word boundary, byte-level ones do not. Encoding `anchor + " " + answer` and dropping the anchor's
    tokens gives the in-context tokens for both.
    """
    head = tokenizer(anchor, add_special_tokens=False)["input_ids"]
    ids = tokenizer(f"{anchor} {answer}", add_special_tokens=False)["input_ids"]
    if ids[: len(head)] != head:
        raise ValueError(
            f"the tokenizer merges {anchor!r} with the answer {answer!r}; cannot split the reply"
        )
    return ids[len(head) :]


class SpacedReplyPrompt(ChatTemplatePrompt):
    """`ChatTemplatePrompt` whose trained reply is " answer" + end token."""

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        return [*reply_ids(tokenizer, answer), tokenizer.eos_token_id]
