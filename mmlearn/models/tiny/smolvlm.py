"""Tiny random SmolVLM with the real processor classes, saved like a hub checkpoint.

HuggingFaceTB/SmolVLM-Instruct is an Idefics3 checkpoint (model_type "idefics3"): AutoProcessor gives
Idefics3Processor and AutoModelForImageTextToText Idefics3ForConditionalGeneration, so those are the
classes built here (SmolVLM2's `smolvlm` classes, with their video processor, are a different family).
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
)

from mmlearn.models.tiny.random_checkpoint import save_tiny
from mmlearn.models.tiny.tokenizer import train_bpe_tokenizer

# tile position tags: without them "<row_1_col_1>" would be tokenised as plain text
TILE_TOKENS = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *TILE_TOKENS,
]

# SmolVLM-Instruct's template: "<|im_start|>User:<image>text<end_of_utterance>\nAssistant:".
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def build_tiny_smolvlm(
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vision_hidden_size: int,
    vision_layers: int,
    patch_size: int,
    tile_size: int,
    longest_edge: int,
    scale_factor: int,
    vocab_size: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write a random SmolVLM (Idefics3) checkpoint + processor. Images are resized to `longest_edge`
    and split into `tile_size` tiles plus a global tile, each (tile_size/patch_size)²/scale_factor² tokens."""
    output_dir = Path(output_dir)
    tokenizer = train_bpe_tokenizer(
        SPECIAL_TOKENS,
        vocab_size=vocab_size,
        image_token="<image>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
    )
    image_seq_len = (tile_size // patch_size) ** 2 // scale_factor**2
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(
            size={"longest_edge": longest_edge}, max_image_size={"longest_edge": tile_size}
        ),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = Idefics3Config(
        text_config={
            "model_type": "llama",
            "vocab_size": max(vocab_size, len(tokenizer)),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_heads // 2,
            "max_position_embeddings": 4096,
            "bos_token_id": ids("<|im_start|>"),
            "eos_token_id": ids("<end_of_utterance>"),
            "pad_token_id": ids("<|im_end|>"),
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_hidden_size * 2,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 2,
            "image_size": tile_size,
            "patch_size": patch_size,
        },
        scale_factor=scale_factor,
        image_token_id=ids("<image>"),
        pad_token_id=ids("<|im_end|>"),
        tie_word_embeddings=False,
    )
    return save_tiny(
        Idefics3ForConditionalGeneration,
        config,
        processor,
        output_dir,
        seed=seed,
        output_logit_scale=output_logit_scale,
        special_tokens={"bos": "<|im_start|>", "eos": "<end_of_utterance>", "pad": "<|im_end|>"},
    )
