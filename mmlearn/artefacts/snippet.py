"""The card's "use it without mmlearn" code: plain transformers (+ peft for an adapter), reading the
prompt and the generate arguments from the folder's mmlearn.json. Only what differs between families
and modalities (how images reach the processor, which placeholders the prompt has) is written in."""

from __future__ import annotations

EXAMPLE_MARKER = "# Example:"

_FILL_NONE = "def fill(template, sample):\n    return template\n"
_FILL_ONE = 'def fill(template, sample):\n    return template.replace("{text}", sample["text"])\n'
_FILL_MANY = """def fill(template, sample):
    values = {
        "{text}": sample.get("text", ""),
        "{context}": sample.get("context") or "N/A",
        "{options}": " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(sample.get("options", []))),
    }
    return re.sub("|".join(re.escape(k) for k in values), lambda m: values[m.group(0)], template)
"""


def _imports(adapter: bool, many: bool, image: bool, quantized: bool) -> str:
    lines = (
        ["import json"] + (["import re"] if many else []) + ["from pathlib import Path", "", "import torch"]
    )
    if image:
        lines.append("from PIL import Image, ImageOps")
    if adapter:
        lines.append("from peft import PeftModel")
    classes = "AutoModelForImageTextToText, AutoProcessor" + (", BitsAndBytesConfig" if quantized else "")
    lines.append(f"from transformers import {classes}")
    return "\n".join(lines) + "\n"


def _loading(adapter: bool, quantized: bool) -> str:
    source = 'card["base_model"]["id"] or card["base_model"]["path"]' if adapter else "folder"
    arguments = [source + ",  # the base model: a Hub id, or a local checkpoint" if adapter else "folder,"]
    if adapter:
        arguments.append('revision=card["base_model"]["revision"],')
    arguments += [
        'dtype=getattr(torch, load["torch_dtype"]),',
        'attn_implementation=load["attn_implementation"],',
        'trust_remote_code=load["trust_remote_code"],',
    ]
    if quantized:
        arguments.append('quantization_config=BitsAndBytesConfig(**load["quantization"]),')
    body = "".join(f"    {line}\n" for line in arguments)
    last = "model = PeftModel.from_pretrained(model, folder).eval()" if adapter else "model.eval()"
    return (
        '\nfolder = Path("path/to/this/folder")  # the folder holding this README.md and mmlearn.json\n'
        'card = json.loads((folder / "mmlearn.json").read_text())\n'
        'prompt, load = card["prompt"], card["loading"]\n\n'
        "processor = AutoProcessor.from_pretrained(folder)\n"
        f"model = AutoModelForImageTextToText.from_pretrained(\n{body})\n{last}\n"
    )


def _inputs(description: dict) -> str:
    """The processor call on a batch of samples (dicts with "text" and/or "image", a path)."""
    prompt = description["prompt"]
    how = prompt["processor_call"]["images"]
    extra = "".join(f", {k}={v!r}" for k, v in prompt["processor_call"]["kwargs"].items())
    load = 'ImageOps.exif_transpose(Image.open(s["image"])).convert("RGB")'
    if "segments" in prompt:  # IDEFICS: a list of text segments and images per prompt
        return (
            f'    texts = [[{load} if part == "<image>" else fill(part, s) '
            'for part in prompt["segments"]] for s in samples]\n'
            f'    inputs = processor(text=texts, padding=True, padding_side="left", return_tensors="pt"{extra})\n'
        )
    lines = '    texts = [fill(prompt["template"], s) for s in samples]\n'
    images = ""
    if how == "flat":
        lines += f"    images = [{load} for s in samples]\n"
        images = "images=images, "
    elif how == "nested":
        lines += f"    images = [[{load}] for s in samples]\n"
        images = "images=images, "
    lines += (
        f'    inputs = processor(text=texts, {images}padding=True, padding_side="left", '
        f'return_tensors="pt"{extra})\n'
    )
    drop = prompt["processor_call"]["drop"]
    return lines + (f"    for key in {drop!r}:\n        inputs.pop(key, None)\n" if drop else "")


def _example(description: dict) -> str:
    data = description["data"]
    sample = {}
    if data["uses_text"]:
        sample["text"] = "an example text"
    if data["uses_image"]:
        sample["image"] = "example.png"
    if "{options}" in description["prompt"]["placeholders"]:
        sample.update(context="N/A", options=["first", "second"])
    return f"{EXAMPLE_MARKER}\nprint(answer([{sample!r}]))\n"


def loading_snippet(description: dict) -> str:
    adapter = description["artefact"] == "adapter"
    quantized = description["loading"]["quantization"] is not None
    placeholders = set(description["prompt"]["placeholders"])
    many = bool(placeholders - {"{text}"})
    fill = _FILL_MANY if many else _FILL_ONE if placeholders else _FILL_NONE
    answer = (
        "def answer(samples):\n"
        '    """Greedy answers, decoded as mmlearn decodes them, for a batch of samples."""\n'
        f"{_inputs(description)}"
        "    with torch.no_grad():\n"
        '        out = model.generate(**inputs, **card["decoding"]["generate_kwargs"])\n'
        '    new = out[:, inputs["input_ids"].shape[1] :]\n'
        '    return processor.batch_decode(new, **card["decoding"]["batch_decode"])\n'
    )
    imports = _imports(adapter, many, description["data"]["uses_image"], quantized)
    return imports + _loading(adapter, quantized) + "\n\n".join(["", fill, answer, _example(description)])
