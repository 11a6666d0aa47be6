"""Tiny random Qwen2-VL with the real processor classes, saved like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from mmlearn.models.tiny.random_checkpoint import save_tiny
from mmlearn.models.tiny.tokenizer import train_bpe_tokenizer

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The structure of Qwen2-VL-Instruct's template: system turn, then image placeholders inside user turns.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer(vocab_size: int):
    return train_bpe_tokenizer(
        SPECIAL_TOKENS,
        vocab_size=vocab_size,
        image_token="<|image_pad|>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def qwen_processor(processor_class, tokenizer, image_size: int):
    """Every image resized to exactly image_size² pixels, so the image-token count is fixed."""
    pixels = image_size * image_size
    return processor_class(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def qwen_text_config(
    tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, vocab_size: int
) -> dict:
    """The language model shared by Qwen2-VL and Qwen2.5-VL; mrope sections sum to head_dim / 2."""
    ids = tokenizer.convert_tokens_to_ids
    head_dim = hidden_size // num_heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]
    return {
        "vocab_size": max(vocab_size, len(tokenizer)),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_heads // 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }


def qwen_special_token_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def save_qwen(
    model_class, config, processor, output_dir: Path, *, seed: int, output_logit_scale: float
) -> Path:
    return save_tiny(
        model_class,
        config,
        processor,
        output_dir,
        seed=seed,
        output_logit_scale=output_logit_scale,
        special_tokens={"eos": "<|im_end|>", "pad": "<|endoftext|>"},
    )


def build_tiny_qwen2vl(
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vision_embed_dim: int,
    vision_depth: int,
    vocab_size: int,
    image_size: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write a random Qwen2-VL checkpoint + processor that `from_pretrained` loads offline."""
    tokenizer = qwen_tokenizer(vocab_size)
    processor = qwen_processor(Qwen2VLProcessor, tokenizer, image_size)
    config = Qwen2VLConfig(
        text_config=qwen_text_config(
            tokenizer,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            vocab_size=vocab_size,
        ),
        vision_config={
            "depth": vision_depth,
            "embed_dim": vision_embed_dim,
            "hidden_size": hidden_size,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        tie_word_embeddings=False,
        **qwen_special_token_ids(tokenizer),
    )
    return save_qwen(
        Qwen2VLForConditionalGeneration,
        config,
        processor,
        Path(output_dir),
        seed=seed,
        output_logit_scale=output_logit_scale,
    )
