"""Small learnable classification tables in data=csv's layout for the head tests: one whose label is
decided by a cue word in the text (the image is noise), one whose label is the image's colour (the
text says nothing)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image

TEXT_CUES = {"sports": ["game"], "weather": ["storm"], "offer": ["sale"]}  # one cue word per label
FILLER = [
    "the",
    "a",
    "and",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "is",
    "this",
    "that",
    "it",
    "we",
    "you",
    "they",
    "my",
    "your",
    "our",
    "today",
    "now",
]
COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 210)}


def _image(path: Path, rgb, rng: random.Random, size: int) -> None:
    img = Image.new("RGB", (size, size))
    img.putdata([tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in rgb) for _ in range(size * size)])
    img.save(path)


def write_table(root: Path, kind: str, splits: dict[str, int], seed: int = 0, size: int = 56) -> Path:
    """kind: `text` (labels from the text's cue word) or `image` (labels from the image's colour)."""
    rng = random.Random(seed)
    labels = list(TEXT_CUES if kind == "text" else COLOURS)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split, n in splits.items():
        with (root / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "image_path", "labels"])
            for i in range(n):
                label = labels[i % len(labels)]
                words = rng.sample(FILLER, 4)
                if kind == "text":
                    words.insert(rng.randint(0, 4), rng.choice(TEXT_CUES[label]))
                    rgb = (128, 128, 128)
                else:
                    rgb = COLOURS[label]
                name = f"{split}_{i}.png"
                _image(root / "images" / name, rgb, rng, size)
                writer.writerow([f"{split}-{i}", " ".join(words), name, label])
    return root


def csv_overrides(root: Path, labels: list[str]) -> list[str]:
    return [
        "data=csv",
        f"data.train_file={root}/train.csv",
        f"data.val_file={root}/val.csv",
        f"data.test_file={root}/test.csv",
        f"data.image_root={root}/images",
        "data.task=multiclass",
        f"data.labels=[{','.join(labels)}]",
        "data.monitor=accuracy",
    ]
