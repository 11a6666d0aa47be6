"""The built-in demo: multi-label posts where two labels live only in the image, two only in the text.

`red` and `blue` are coloured blocks drawn on a noisy grey picture and never mentioned in the text;
`urgent` and `question` are cues in the text and never drawn. A model that ignores either modality
cannot get more than half the labels right.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

LABELS = ["red", "blue", "urgent", "question"]
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}
SUBJECTS = ["the report", "the meeting notes", "the match photos", "the invoice", "the slides", "our plan"]
ACTIONS = ["send", "check", "share", "review", "print", "update"]
URGENT = ["asap", "right now", "immediately", "before noon", "urgently"]
PLAIN = ["when you can", "this week", "at some point", "later", "no rush"]


def _text(rng: random.Random, urgent: bool, question: bool) -> str:
    action, subject = rng.choice(ACTIONS), rng.choice(SUBJECTS)
    when = rng.choice(URGENT if urgent else PLAIN)
    if question:
        return f"can you {action} {subject} {when}?"
    return f"please {action} {subject} {when}."


def _image(rng: random.Random, colours: list[str], size: int) -> Image.Image:
    grey = rng.randint(90, 160)
    img = Image.new("RGB", (size, size), (grey, grey, grey))
    pixels = img.load()
    for _ in range(size * size // 4):
        x, y = rng.randrange(size), rng.randrange(size)
        shade = grey + rng.randint(-40, 40)
        pixels[x, y] = (shade, shade, shade)
    draw = ImageDraw.Draw(img)
    block = size // 2
    corners = rng.sample([(0, 0), (block, 0), (0, block), (block, block)], k=len(colours))
    for colour, (x, y) in zip(colours, corners, strict=True):
        draw.rectangle([x + 2, y + 2, x + block - 3, y + block - 3], fill=COLOURS[colour])
    return img


def build_demo(root: Path, *, splits: dict[str, int], image_size: int, seed: int) -> Path:
    """Write `<split>.csv`, `labels.txt` and `images/` under root; identical output for identical args."""
    root = Path(root)
    marker = root / "manifest.json"
    manifest = {"splits": splits, "image_size": image_size, "seed": seed, "labels": LABELS}
    if marker.is_file() and json.loads(marker.read_text()) == manifest:
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, count in splits.items():
        rows = []
        for index in range(count):
            present = [label for label in LABELS if rng.random() < 0.45]
            name = f"{split}_{index:05d}.png"
            colours = [label for label in present if label in COLOURS]
            _image(rng, colours, image_size).save(root / "images" / name)
            text = _text(rng, "urgent" in present, "question" in present)
            rows.append(
                {
                    "id": f"{split}-{index}",
                    "text": text,
                    "image_path": f"images/{name}",
                    "labels": ",".join(present),
                }
            )
        with (root / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "text", "image_path", "labels"])
            writer.writeheader()
            writer.writerows(rows)
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    marker.write_text(json.dumps(manifest, indent=2))
    return root
