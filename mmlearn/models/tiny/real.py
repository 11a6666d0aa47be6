"""Random-weight models on the real checkpoints' processor files (tokenizer, chat template, image
processor, generation config; no weights): the real config shrunk in depth and width, with the real
vocabulary, special-token ids, image-token id and vision patch/merge sizes kept. Tests load them
through `from_pretrained` like a checkpoint and compare mmlearn's prompts, labels, image-token counts
and stop tokens with what the real files give.

`build_real_size` keeps the released config whole (same layers, widths and vision tower, so the same
FLOPs and memory as the checkpoint, e.g. Qwen2-VL-2B's 2.2B parameters): the GPU benchmark trains it.
Its `shrink` argument gives a CPU smoke run the shrunk config instead, through the same files and
loading path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from mmlearn.models.tiny.random_checkpoint import scale_output_head

# The checkpoint's own files copied next to the random weights (config.json is rewritten).
PROCESSOR_FILES = (
    "added_tokens.json",
    "chat_template.json",
    "generation_config.json",
    "merges.txt",
    "preprocessor_config.json",
    "processor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "vocab.json",
)


def _shrunk_text(text: dict, hidden_size: int, num_layers: int, num_heads: int) -> dict:
    text = {
        **text,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": max(1, num_heads // 2),
    }
    text.pop("max_window_layers", None)
    return text


def _mrope(head_dim: int) -> list[int]:
    """Sections summing to head_dim / 2, in the released 16:24:24 proportions."""
    half = head_dim // 2
    temporal = half // 4
    return [temporal, (half - temporal) // 2, half - temporal - (half - temporal) // 2]


def _qwen_config(raw: dict, hidden_size: int, num_layers: int, num_heads: int) -> dict:
    config = _shrunk_text(raw, hidden_size, num_layers, num_heads)
    config.pop("quantization_config", None)  # the Qwen2-VL export is AWQ; these weights are not
    config["rope_scaling"] = {"type": "mrope", "mrope_section": _mrope(hidden_size // num_heads)}
    vision = dict(raw.get("vision_config", {}))
    vision.update(depth=num_layers, num_heads=num_heads, hidden_size=hidden_size)
    if raw["model_type"] == "qwen2_5_vl":
        vision.update(intermediate_size=2 * hidden_size, out_hidden_size=hidden_size)
        vision["fullatt_block_indexes"] = [num_layers - 1]
    else:
        vision.update(embed_dim=hidden_size, mlp_ratio=2)
    config["vision_config"] = vision
    return config


def _llava_config(raw: dict, hidden_size: int, num_layers: int, num_heads: int) -> dict:
    vision = {
        **raw["vision_config"],
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,  # vision_feature_layer=-2 needs at least two
        "num_attention_heads": num_heads,
        "projection_dim": hidden_size,
    }
    return {
        **raw,
        "text_config": _shrunk_text(raw["text_config"], hidden_size, num_layers, num_heads),
        "vision_config": vision,
    }


SHRINK = {"qwen2_vl": _qwen_config, "qwen2_5_vl": _qwen_config, "llava": _llava_config}


def shrunk_config(source: Path, *, hidden_size: int, num_layers: int, num_heads: int):
    """The released config.json with tiny widths and depths; vocabulary and token ids untouched."""
    raw = json.loads((source / "config.json").read_text())
    shrink = SHRINK[raw["model_type"]]
    values = shrink(raw, hidden_size, num_layers, num_heads)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def real_size_config(source: Path):
    """The released config.json as it is, less its quantisation entry (the Qwen2-VL export is AWQ;
    random weights are not)."""
    raw = json.loads((Path(source) / "config.json").read_text())
    raw.pop("quantization_config", None)
    return AutoConfig.for_model(raw.pop("model_type"), **raw)


def _save_with_processor_files(model, source: Path, output_dir: Path) -> Path:
    model.save_pretrained(output_dir)
    for name in PROCESSOR_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, output_dir / name)  # the real generation_config too
    return output_dir


def build_real_size(
    source: str | Path,
    output_dir: str | Path,
    *,
    seed: int,
    dtype: str = "bfloat16",
    device: str = "cpu",
    shrink: dict | None = None,
) -> Path:
    """Random weights at the released size (`shrink=None`), or at `shrunk_config(**shrink)` for a
    smoke run, saved in `dtype` with the real processor files. Built on `device` (a 2B model
    initialises in seconds on a GPU, about a minute on CPU). No output-head scaling: throughput and
    memory do not depend on it."""
    source, output_dir = Path(source), Path(output_dir)
    config = shrunk_config(source, **shrink) if shrink else real_size_config(source)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
    return _save_with_processor_files(model, source, output_dir)


def build_real(
    source: str | Path,
    output_dir: str | Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    seed: int,
    output_logit_scale: float,
) -> Path:
    """Write random weights for the shrunk config plus the real processor files into `output_dir`."""
    source, output_dir = Path(source), Path(output_dir)
    config = shrunk_config(source, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    scale_output_head(model, output_logit_scale)
    return _save_with_processor_files(model, source, output_dir)
