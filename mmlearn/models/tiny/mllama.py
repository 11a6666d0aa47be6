"""Tiny random Llama 3.2 Vision (Mllama) with the real processor classes, saved like a hub checkpoint."""

from __future__ import annotations

from pathlib import Path

from tokenizers import processors
from transformers import (
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessor,
    MllamaProcessor,
)

from mmlearn.models.tiny.random_checkpoint import save_tiny
from mmlearn.models.tiny.tokenizer import train_bpe_tokenizer

SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
]

# The structure of Llama-3.2-11B-Vision-Instruct's template: bos, a dated system turn only for
# text-only prompts (today's date unless `date_string` is given), an error for a system message with
# images, and <|image|> placeholders where the user turn puts them.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '26 Jul 2024' %}"
    "{%- endif %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- if messages[0]['content'] is string %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- else %}{%- set system_message = messages[0]['content'][0]['text'] | trim %}{%- endif %}"
    "{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{%- set ns = namespace(has_images=false) %}"
    "{%- for message in messages %}{%- if message['content'] is not string %}"
    "{%- for part in message['content'] %}{%- if part['type'] == 'image' %}{%- set ns.has_images = true %}"
    "{%- endif %}{%- endfor %}{%- endif %}{%- endfor %}"
    "{%- if ns.has_images and system_message != '' %}"
    "{{- raise_exception('Prompting with images is incompatible with system messages.') }}{%- endif %}"
    "{%- if not ns.has_images %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def add_bos_on_encode(tokenizer, bos_token: str) -> None:
    """Like the real Llama tokenizers: every `tokenizer(text)` call starts with bos."""
    bos_id = tokenizer.convert_tokens_to_ids(bos_token)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos_token} $A", pair=f"{bos_token} $A {bos_token} $B", special_tokens=[(bos_token, bos_id)]
    )


def build_tiny_mllama(
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    cross_attention_layers: tuple[int, ...],
    num_heads: int,
    vision_hidden_size: int,
    vision_layers: int,
    vision_global_layers: int,
    tile_size: int,
    max_image_tiles: int,
    vocab_size: int,
    gate_value: float,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write a random Mllama checkpoint + processor. The tanh gates (zero at random init, so the image
    would have no effect and cross-attention LoRA no gradient) are set to `gate_value`."""
    output_dir = Path(output_dir)
    tokenizer = train_bpe_tokenizer(
        SPECIAL_TOKENS,
        vocab_size=vocab_size,
        image_token="<|image|>",
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        chat_template=CHAT_TEMPLATE,
    )
    add_bos_on_encode(tokenizer, "<|begin_of_text|>")
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessor(
            size={"height": tile_size, "width": tile_size}, max_image_tiles=max_image_tiles
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    intermediate_layers = [0]
    config = MllamaConfig(
        text_config={
            "vocab_size": max(vocab_size, len(tokenizer)),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_heads // 2,
            "cross_attention_layers": list(cross_attention_layers),
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "bos_token_id": ids("<|begin_of_text|>"),
            "eos_token_id": ids("<|eot_id|>"),
            "pad_token_id": ids("<|finetune_right_pad_id|>"),
        },
        vision_config={
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_hidden_size * 2,
            "num_hidden_layers": vision_layers,
            "num_global_layers": vision_global_layers,
            "attention_heads": 2,
            "image_size": tile_size,
            "patch_size": 14,
            "max_num_tiles": max_image_tiles,
            "intermediate_layers_indices": intermediate_layers,
            "vision_output_dim": vision_hidden_size * (len(intermediate_layers) + 1),
        },
        image_token_index=ids("<|image|>"),
    )

    def open_gates(model) -> None:
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("gate", "cross_attn_attn_gate", "cross_attn_mlp_gate"):
                param.fill_(gate_value)

    return save_tiny(
        MllamaForConditionalGeneration,
        config,
        processor,
        output_dir,
        seed=seed,
        output_logit_scale=output_logit_scale,
        special_tokens={"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": "<|finetune_right_pad_id|>"},
        adjust=open_gates,
    )
