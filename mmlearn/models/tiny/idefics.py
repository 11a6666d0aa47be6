"""Tiny random IDEFICS (v1) with the real processor class, saved like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    IdeficsConfig,
    IdeficsForVisionText2Text,
    IdeficsImageProcessor,
    IdeficsProcessor,
)

from mmlearn.models.tiny.random_checkpoint import save_tiny
from mmlearn.models.tiny.tokenizer import train_bpe_tokenizer

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
# Appended after training so that, as in idefics-9b (ids 32000, 32001), they sit past the base
# vocabulary and live in the decoupled "additional" embedding and output rows.
IMAGE_TOKENS = ["<fake_token_around_image>", "<image>"]


def _tokenizer(vocab_size: int):
    tokenizer = train_bpe_tokenizer(
        SPECIAL_TOKENS,
        vocab_size=vocab_size,
        image_token="<unk>",  # replaced below, once <image> exists at the end of the vocabulary
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",  # idefics-9b pads with id 0 (<unk>)
        extra_corpus=["User: Assistant:"],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS})
    tokenizer.image_token = "<image>"
    return tokenizer


def build_tiny_idefics(
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    cross_layer_interval: int,
    vision_embed_dim: int,
    vision_layers: int,
    resampler_latents: int,
    vocab_size: int,
    image_size: int,
    patch_size: int,
    gate_value: float,
    latent_scale: float,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write a random IDEFICS checkpoint + processor that `from_pretrained` loads offline.

    Like the real checkpoints it uses a decoupled embedding (the two image tokens are extra rows) and
    a perceiver resampler. Three departures from a random init make it behave like a trained model:
    the tanh gates of the cross-attention blocks are set to `gate_value` (at the default zero the image
    has no effect and cross-attention LoRA gets no gradient); the resampler's latents are scaled by
    `latent_scale` (random latents of std 1 swamp the attention output, about 0.01, so the resampler's
    output barely depends on the image: red and blue pictures differ by ~1%); and nothing is frozen at
    construction (`freeze_text_layers` / `freeze_vision_layers` default to True and would freeze at
    every load).
    """
    output_dir = Path(output_dir)
    tokenizer = _tokenizer(vocab_size)
    ids = tokenizer.convert_tokens_to_ids
    base_vocab = len(tokenizer) - len(IMAGE_TOKENS)
    if sorted(ids(IMAGE_TOKENS)) != [base_vocab, base_vocab + 1]:
        raise AssertionError("the image tokens must be the last two ids (the decoupled embedding rows)")
    processor = IdeficsProcessor(
        image_processor=IdeficsImageProcessor(image_size=image_size),
        tokenizer=tokenizer,
        image_size=image_size,
    )
    config = IdeficsConfig(
        vocab_size=base_vocab,
        additional_vocab_size=len(IMAGE_TOKENS),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        cross_layer_interval=cross_layer_interval,
        qk_layer_norms=True,
        use_resampler=True,
        freeze_text_layers=False,
        freeze_vision_layers=False,
        freeze_lm_head=False,
        max_position_embeddings=1024,
        bos_token_id=ids("<s>"),
        eos_token_id=ids("</s>"),
        pad_token_id=ids("<unk>"),
        vision_config={
            "embed_dim": vision_embed_dim,
            "image_size": image_size,
            "intermediate_size": vision_embed_dim * 2,
            "patch_size": patch_size,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 2,
        },
        perceiver_config={
            "use_resampler": True,
            "resampler_n_latents": resampler_latents,
            "resampler_depth": 1,
            "resampler_n_heads": 2,
            "resampler_head_dim": 16,
        },
    )

    def open_gates(model) -> None:
        for block in model.model.gated_cross_attn_layers:
            block.alpha_cross_attn.fill_(gate_value)
            block.alpha_dense.fill_(gate_value)
        model.model.perceiver_resampler.latents.mul_(latent_scale)

    return save_tiny(
        IdeficsForVisionText2Text,
        config,
        processor,
        output_dir,
        seed=seed,
        output_logit_scale=output_logit_scale,
        special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<unk>"},
        adjust=open_gates,
    )
