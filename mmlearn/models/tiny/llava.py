"""Tiny random LLaVA-1.5 with the real processor classes, saved like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from mmlearn.models.tiny.mllama import add_bos_on_encode
from mmlearn.models.tiny.random_checkpoint import save_tiny
from mmlearn.models.tiny.tokenizer import train_bpe_tokenizer

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]

# llava-hf/llava-1.5-7b-hf's template: "USER: <image>\n{text} ASSISTANT:" (images first, then text).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] + ' ' }}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build_tiny_llava(
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vision_hidden_size: int,
    vision_layers: int,
    patch_size: int,
    image_size: int,
    vocab_size: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write a random LLaVA-1.5 checkpoint + processor: a CLIP tower whose second-to-last layer
    (`vision_feature_layer=-2`, so at least two layers) feeds (image_size/patch_size)² image tokens."""
    output_dir = Path(output_dir)
    tokenizer = train_bpe_tokenizer(
        SPECIAL_TOKENS,
        vocab_size=vocab_size,
        image_token="<image>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.unk_token = "<unk>"
    add_bos_on_encode(tokenizer, "<s>")  # the Llama-2 tokenizer starts every encoding with <s>
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": max(vocab_size, len(tokenizer)),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_heads,
            "max_position_embeddings": 4096,
            "bos_token_id": ids("<s>"),
            "eos_token_id": ids("</s>"),
            "pad_token_id": ids("<pad>"),
        },
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_hidden_size * 2,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "projection_dim": vision_hidden_size,
        },
        image_token_index=ids("<image>"),
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    return save_tiny(
        LlavaForConditionalGeneration,
        config,
        processor,
        output_dir,
        seed=seed,
        output_logit_scale=output_logit_scale,
        special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<pad>"},
    )
