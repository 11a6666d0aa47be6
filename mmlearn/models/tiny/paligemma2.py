"""Tiny random PaliGemma 2 (SigLIP + Gemma-2) with the real processor class, saved like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessor,
)

from mmlearn.models.tiny.random_checkpoint import save_tiny
from mmlearn.models.tiny.tokenizer import train_bpe_tokenizer

# Gemma's first ids; the processor appends the 1,024 <locNNNN> and 128 <segNNN> tokens itself.
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]


def build_tiny_paligemma2(
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vision_hidden_size: int,
    vision_layers: int,
    vocab_size: int,
    image_size: int,
    patch_size: int,
    sliding_window: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write a random PaliGemma 2 checkpoint + processor that `from_pretrained` loads offline.

    The output head is untied from the input embedding (the real checkpoint ties them) so that
    scaling the head to reach confident logits leaves the input embeddings alone.
    """
    output_dir = Path(output_dir)
    tokenizer = train_bpe_tokenizer(
        SPECIAL_TOKENS,
        vocab_size=vocab_size,
        image_token="<image>",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
    )
    image_seq_length = (image_size // patch_size) ** 2
    processor = PaliGemmaProcessor(
        image_processor=SiglipImageProcessor(
            size={"height": image_size, "width": image_size}, image_seq_length=image_seq_length
        ),
        tokenizer=tokenizer,
    )
    ids = tokenizer.convert_tokens_to_ids
    full_vocab = len(processor.tokenizer)  # after the processor added the loc/seg tokens
    head_dim = hidden_size // num_heads
    config = PaliGemmaConfig(
        text_config={
            "model_type": "gemma2",
            "vocab_size": full_vocab,
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_heads // 2,
            "head_dim": head_dim,
            "query_pre_attn_scalar": head_dim,
            "sliding_window": sliding_window,
            "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0,
            "max_position_embeddings": 4096,
            "bos_token_id": ids("<bos>"),
            "eos_token_id": ids("<eos>"),
            "pad_token_id": ids("<pad>"),
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_hidden_size * 2,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "vision_use_head": False,
        },
        image_token_index=ids("<image>"),
        vocab_size=full_vocab,
        projection_dim=hidden_size,
        hidden_size=hidden_size,
        tie_word_embeddings=False,
    )
    return save_tiny(
        PaliGemmaForConditionalGeneration,
        config,
        processor,
        output_dir,
        seed=seed,
        output_logit_scale=output_logit_scale,
        special_tokens={"bos": "<bos>", "eos": "<eos>", "pad": "<pad>"},
    )
