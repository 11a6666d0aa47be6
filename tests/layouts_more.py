"""Small copies of PerceptSent, 100 Sports and Hugging Face on-disk layouts, in their original formats.

Counts are fixed here so tests can state them exactly; images are tiny but real (PIL).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

# --- PerceptSent --------------------------------------------------------------------------------------
# One letter per vote of workers w1..w5: N Negative, n SlightlyNegative, 0 Neutral, p SlightlyPositive,
# P Positive.
CODES = {"N": "Negative", "n": "SlightlyNegative", "0": "Neutral", "p": "SlightlyPositive", "P": "Positive"}
PERCEPTSENT_VOTES = {
    "a1": "NNNNN",
    "a2": "NNNnn",
    "a3": "nnn0P",
    "a4": "000pN",
    "a5": "0000P",
    "a6": "pppP0",
    "a7": "PPPPp",
    "a8": "PPppn",  # P5: 2-2 between positive and slightly positive
    "a9": "Nn0pP",  # P5 and P3: no class above 2 votes
    # three unanimous images per sentiment
    **{f"f{code}{k}": code * 5 for code in "Nn0pP" for k in range(3)},
}


def _image(path: Path, colour: tuple[int, int, int], size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


def write_perceptsent(root: Path, responses_key: str = "image_resps") -> Path:
    """dataset.json as the authors' reader expects it: each task is one worker's assignment; every worker
    answers in two assignments (first and second half of the images); images/<id>.jpg."""
    ids = list(PERCEPTSENT_VOTES)
    halves = (ids[: len(ids) // 2], ids[len(ids) // 2 :])
    tasks = []
    for worker in range(5):
        for part, members in enumerate(halves):
            responses = [
                {
                    "id": image_id,
                    "sentiment": CODES[PERCEPTSENT_VOTES[image_id][worker]],
                    "perceptions": ["Nature", "Sky"] if worker % 2 else [],
                }
                for image_id in members
            ]
            tasks.append(
                {
                    "assignment_id": f"asg{worker}{part}",
                    "worker_id": f"w{worker + 1}",
                    "info_resp": {"age": "26_35", "gs": "female"} if part == 0 else None,
                    responses_key: responses,
                }
            )
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"tasks": tasks}, indent=1), encoding="utf-8")
    for i, image_id in enumerate(ids):
        _image(root / "images" / f"{image_id}.jpg", (10 * i, 100, 200 - 5 * i))
    return root


def write_perceptsent_captions(root: Path, missing: str | None = None) -> Path:
    """Seed 003's caption CSV (id,text,sentiment), one caption per image except `missing`."""
    path = root / "captions.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "sentiment"])
        for image_id, votes in PERCEPTSENT_VOTES.items():
            if image_id != missing:
                writer.writerow([image_id, f"A picture, {image_id}, of a street.", CODES[votes[0]]])
    return path


# --- 100 Sports --------------------------------------------------------------------------------------
SPORTS_FILES = {
    "train": {"air hockey": 3, "baseball": 2, "formula 1 racing": 2, "tug of war": 2},
    "valid": {"air hockey": 1, "baseball": 1, "formula 1 racing": 1, "tug of war": 1},
    "test": {"air hockey": 1, "baseball": 2, "formula 1 racing": 1, "tug of war": 1},
}


# The 100 class folders of the Kaggle dataset, its spellings kept ("ampute football", "barell racing").
SPORTS100 = [
    "air hockey",
    "ampute football",
    "archery",
    "arm wrestling",
    "axe throwing",
    "balance beam",
    "barell racing",
    "baseball",
    "basketball",
    "baton twirling",
    "bike polo",
    "billiards",
    "bmx",
    "bobsled",
    "bowling",
    "boxing",
    "bull riding",
    "bungee jumping",
    "canoe slamon",
    "cheerleading",
    "chuckwagon racing",
    "cricket",
    "croquet",
    "curling",
    "disc golf",
    "fencing",
    "field hockey",
    "figure skating men",
    "figure skating pairs",
    "figure skating women",
    "fly fishing",
    "football",
    "formula 1 racing",
    "frisbee",
    "gaga",
    "giant slalom",
    "golf",
    "hammer throw",
    "hang gliding",
    "harness racing",
    "high jump",
    "hockey",
    "horse jumping",
    "horse racing",
    "horseshoe pitching",
    "hurdles",
    "hydroplane racing",
    "ice climbing",
    "ice yachting",
    "jai alai",
    "javelin",
    "jousting",
    "judo",
    "lacrosse",
    "log rolling",
    "luge",
    "motorcycle racing",
    "mushing",
    "nascar racing",
    "olympic wrestling",
    "parallel bar",
    "pole climbing",
    "pole dancing",
    "pole vault",
    "polo",
    "pommel horse",
    "rings",
    "rock climbing",
    "roller derby",
    "rollerblade racing",
    "rowing",
    "rugby",
    "sailboat racing",
    "shot put",
    "shuffleboard",
    "sidecar racing",
    "ski jumping",
    "sky surfing",
    "skydiving",
    "snow boarding",
    "snowmobile racing",
    "speed skating",
    "steer wrestling",
    "sumo wrestling",
    "surfing",
    "swimming",
    "table tennis",
    "tennis",
    "track bicycle",
    "trapeze",
    "tug of war",
    "ultimate",
    "uneven bars",
    "volleyball",
    "water cycling",
    "water polo",
    "weightlifting",
    "wheelchair basketball",
    "wheelchair racing",
    "wingsuit flying",
]


def sports100_files(test_classes: int = 20) -> dict[str, dict[str, int]]:
    """One training and one validation image for each of the 100 classes; one test image for each of
    the first `test_classes` (the label set is still all 100)."""
    return {
        "train": dict.fromkeys(SPORTS100, 1),
        "valid": dict.fromkeys(SPORTS100, 1),
        "test": dict.fromkeys(SPORTS100[:test_classes], 1),
    }


def write_sports(root: Path, files: dict[str, dict[str, int]] = SPORTS_FILES) -> Path:
    """<split>/<sport name>/<nnn>.jpg plus sports.csv (class id, filepaths, labels, data set)."""
    classes = sorted(files["train"])
    rows = []
    for split, counts in files.items():
        for sport, count in counts.items():
            for n in range(1, count + 1):
                rel = f"{split}/{sport}/{n:03d}.jpg"
                _image(root / rel, (classes.index(sport) * 60 % 256, n * 40, 90))
                rows.append([classes.index(sport), rel, sport, split])
    with (root / "sports.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class id", "filepaths", "labels", "data set"])
        writer.writerows(rows)
    return root


# --- Hugging Face datasets -----------------------------------------------------------------------------
HF_LABELS = ["bird", "cat", "dog"]
HF_ROWS = {  # split -> labels by row
    "train": ["cat", "dog", "bird", "cat", "dog", "cat"],
    "validation": ["cat", "dog", "bird"],
    "test": ["dog", "dog", "bird", "cat"],
}


def _hf_split(split: str, images_dir: Path, class_label: bool):
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets import Image as HFImage

    labels = HF_ROWS[split]
    paths = []
    for i, label in enumerate(labels):
        path = images_dir / split / f"{i}.png"
        _image(path, (HF_LABELS.index(label) * 100, i * 30, 50))
        paths.append(str(path))
    label_feature = ClassLabel(names=HF_LABELS) if class_label else Value("string")
    features = Features(
        {"uid": Value("string"), "caption": Value("string"), "picture": HFImage(), "target": label_feature}
    )
    return Dataset.from_dict(
        {
            "uid": [f"{split}-{i:02d}" for i in range(len(labels))],
            "caption": [f"a photo of a {label} number {i}" for i, label in enumerate(labels)],
            "picture": paths,
            "target": [HF_LABELS.index(x) for x in labels] if class_label else labels,
        },
        features=features,
    )


def write_hf_saved(root: Path, scratch: Path) -> Path:
    """A DatasetDict saved with save_to_disk: image bytes embedded, `target` a ClassLabel."""
    from datasets import DatasetDict

    DatasetDict({split: _hf_split(split, scratch, True) for split in HF_ROWS}).save_to_disk(str(root))
    return root


def write_hf_parquet(root: Path, scratch: Path) -> Path:
    """One parquet file per split as `datasets` writes them (image struct of bytes), `target` strings."""
    root.mkdir(parents=True, exist_ok=True)
    for split in HF_ROWS:
        _hf_split(split, scratch, False).to_parquet(str(root / f"{split}.parquet"))
    return root


def write_imagefolder(root: Path) -> Path:
    """<split>/<class>/<file>.png with `valid` for validation, as the imagefolder builder reads it."""
    for split, labels in HF_ROWS.items():
        folder = "valid" if split == "validation" else split
        for i, label in enumerate(labels):
            _image(root / folder / label / f"{i}.png", (HF_LABELS.index(label) * 100, i * 30, 50))
    return root
