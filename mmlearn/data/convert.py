"""Write any mmlearn dataset as a conversation file, with the prompts and targets mmlearn trains on:

    python -m mmlearn.data.convert --format llava|sharegpt|openai --out DIR [--splits train,val] <Hydra overrides>
    python -m mmlearn.data.convert --format sharegpt --out out data=csv data.train_file=... model=qwen2vl

The overrides compose conf/train.yaml as train.py does (data=, data.*, modality=, model= for a system
prompt). Each split becomes DIR/<split>.json (llava: a JSON list) or DIR/<split>.jsonl; image paths are
absolute, and images held in a dataset (data=hf) are written under DIR/images/. `data=conversations
data.image_root=DIR` reads the files back into the same prompts and targets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from mmlearn.data.conversations.formats import IMAGE_TOKEN
from mmlearn.data.conversations.sample import ConversationSample, Turn, as_turns
from mmlearn.sample import Sample

WRITERS = ("llava", "sharegpt", "openai")
LLAVA_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def sample_turns(task, sample: Sample, n_images: int, system: str | None) -> tuple[Turn, ...]:
    if isinstance(sample, ConversationSample):
        return sample.turns
    return as_turns(task.prompt(sample), n_images, task.answer(sample), system)


def _placeholder_text(turn: Turn) -> str:
    return "\n".join(IMAGE_TOKEN if part is None else part for part in turn.parts)


def to_row(fmt: str, sample_id: str, turns: tuple[Turn, ...], images: list[str]) -> dict:
    """One conversation in the layout `fmt` (see mmlearn/data/conversations/formats.py)."""
    if fmt == "openai":
        queue = iter(images)
        messages = []
        for turn in turns:
            content = [
                {"type": "image", "image": next(queue)} if part is None else {"type": "text", "text": part}
                for part in turn.parts
            ]
            plain = len(content) == 1 and content[0]["type"] == "text"
            messages.append({"role": turn.role, "content": content[0]["text"] if plain else content})
        return {"id": sample_id, "messages": messages}
    if fmt == "sharegpt":
        system = [t for t in turns if t.role == "system"]
        row = {
            "id": sample_id,
            "conversations": [
                {"from": LLAVA_ROLES[t.role], "value": _placeholder_text(t)}
                for t in turns
                if t.role != "system"
            ],
        }
        row["images"] = images
        if system:
            row["system"] = system[0].text
        return row
    row = {"id": sample_id}
    if images:
        row["image"] = images[0] if len(images) == 1 else images
    row["conversations"] = [{"from": LLAVA_ROLES[t.role], "value": _placeholder_text(t)} for t in turns]
    return row


def image_refs(sample: Sample, out: Path, split: str, load_rgb) -> list[str]:
    images = sample.images if isinstance(sample, ConversationSample) else [sample.image_path]
    refs = []
    for number, image in enumerate(i for i in images if i is not None):
        if isinstance(image, (str, os.PathLike)):
            refs.append(str(Path(image).resolve()))
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{sample.id}-{number}") + ".png"
        target = out / "images" / split / name
        target.parent.mkdir(parents=True, exist_ok=True)
        load_rgb(image).save(target)
        refs.append(str(target.relative_to(out)))
    return refs


def write_split(datamodule, split: str, fmt: str, out: Path, system: str | None) -> Path:
    rows = []
    for sample in datamodule.splits[split]:
        refs = image_refs(sample, out, split, datamodule.inputs.load_rgb)
        rows.append(to_row(fmt, sample.id, sample_turns(datamodule.task, sample, len(refs), system), refs))
    path = out / f"{split}.{'json' if fmt == 'llava' else 'jsonl'}"
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        if fmt == "llava":
            json.dump(rows, handle, ensure_ascii=False, indent=1)
        else:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    tmp.replace(path)
    return path


def convert(overrides: list[str], fmt: str, out: Path, splits: list[str] | None = None) -> list[Path]:
    """Compose conf/train.yaml with `overrides`, read the data and write each split in `fmt`."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mmlearn import conf_dir

    if fmt not in WRITERS:
        raise ValueError(f"--format must be one of {WRITERS}, got {fmt!r}")
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose("train", overrides=overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup()
    wanted = splits or [s for s in datamodule.available_splits() if s in datamodule.splits]
    missing = [s for s in wanted if s not in datamodule.splits]
    if missing:
        raise ValueError(
            f"--splits {missing} not read by data={cfg.data.name}: it has {sorted(datamodule.splits)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    system = cfg.model.prompt.get("system") if "prompt" in cfg.model else None
    return [write_split(datamodule, split, fmt, out, system) for split in wanted]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mmlearn.data.convert", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--format", required=True, choices=WRITERS)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--splits", default=None, help="comma-separated, e.g. train,val (default: every split)"
    )
    args, overrides = parser.parse_known_args(argv)
    splits = args.splits.split(",") if args.splits else None
    for path in convert(overrides, args.format, args.out, splits):
        print(path)


if __name__ == "__main__":
    main()
