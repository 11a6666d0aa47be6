"""Tiny random Qwen2.5-VL with the real processor classes, saved like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from mmlearn.models.tiny.qwen2vl import (
    qwen_processor,
    qwen_special_token_ids,
    qwen_text_config,
    qwen_tokenizer,
    save_qwen,
)


def build_tiny_qwen2_5vl(
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vision_hidden_size: int,
    vision_depth: int,
    vocab_size: int,
    image_size: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write a random Qwen2.5-VL checkpoint + processor (same chat template and tokens as Qwen2-VL)."""
    tokenizer = qwen_tokenizer(vocab_size)
    processor = qwen_processor(Qwen2_5_VLProcessor, tokenizer, image_size)
    config = Qwen2_5_VLConfig(
        text_config=qwen_text_config(
            tokenizer,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            vocab_size=vocab_size,
        ),
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
        tie_word_embeddings=False,
        **qwen_special_token_ids(tokenizer),
    )
    return save_qwen(
        Qwen2_5_VLForConditionalGeneration,
        config,
        processor,
        Path(output_dir),
        seed=seed,
        output_logit_scale=output_logit_scale,
    )
