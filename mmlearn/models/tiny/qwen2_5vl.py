"""Tiny random Qwen2.5-VL with the real processor classes, saved like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
)
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from mmlearn.models.tiny.init import scale_output_head
from mmlearn.models.tiny.qwen2vl import CHAT_TEMPLATE, SPECIAL_TOKENS
from mmlearn.models.tiny.tokenizer import train_bpe_tokenizer


def build_tiny_qwen2_5vl(
    output_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    vocab_size: int = 640,
    image_size: int = 56,
    seed: int = 0,
    output_logit_scale: float = 10.0,
) -> Path:
    """Write a random Qwen2.5-VL checkpoint + processor (same chat template and tokens as Qwen2-VL)."""
    output_dir = Path(output_dir)
    tokenizer = train_bpe_tokenizer(
        SPECIAL_TOKENS,
        vocab_size=vocab_size,
        image_token="<|image_pad|>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    pixels = image_size * image_size
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    head_dim = hidden_size // num_heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]
    config = Qwen2_5_VLConfig(
        text_config={
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
        },
        # unlike Qwen2-VL, hidden_size is the vision width and out_hidden_size the text width
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_hidden_size * 2,
            "out_hidden_size": hidden_size,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    scale_output_head(model, output_logit_scale)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir
