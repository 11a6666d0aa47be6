"""Small copies of the ScienceQA and sports-captions layouts, written in their original on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

# pid -> (question, choices, answer index, hint, has image, original split)
PROBLEMS = {
    "1": ("Which animal's feet are also adapted for digging?", ["mole", "lizard"], 0, "", True, "train"),
    "2": ("What is the capital of Utah?", ["Salt Lake City", "Denver", "Boise"], 0, "", True, "train"),
    "3": ("Which word would you find on a dictionary page?", ["ill", "isle", "inch"], 2, "", False, "train"),
    "4": (
        "Which tense does the sentence use?",
        ["past tense", "present tense", "future tense"],
        1,
        "Mona will pack her suitcase.",
        False,
        "train",
    ),
    "5": ("Which is a compound sentence?", ["I ran.", "I ran, and she hid."], 1, "", False, "train"),
    "6": ("Identify the question that Tom can answer.", ["A", "B", "C", "D"], 3, "Tom tests.", True, "train"),
    "7": ("Which state is highlighted?", ["Iowa", "Ohio", "Utah", "Maine"], 2, "", True, "val"),
    "8": ("What does the verbal irony suggest?", ["fun", "boredom"], 1, "Irony here.", False, "val"),
    "9": ("Which material is this spoon made of?", ["wood", "metal"], 0, "", True, "val"),
    "10": ("Which is smoother?", ["sandpaper", "glass", "bark", "rock", "brick"], 1, "", False, "val"),
    "11": ("Think about the magnetic force.", ["repel", "attract"], 0, "Two magnets.", True, "test"),
    "12": ("Which tense?", ["past", "present", "future"], 2, "", False, "test"),
    "13": ("Which animal is a mammal?", ["shark", "whale", "trout"], 1, "", True, "test"),
    "14": ("Complete the sentence.", ["salt", "pepper"], 0, "Cooking.", False, "test"),
}
PID_SPLITS = {
    "train": ["1", "2", "3", "4", "5", "6"],
    "val": ["7", "8", "9", "10"],
    "test": ["11", "12", "13", "14"],
    "minitrain": ["1", "3", "5"],
    "minival": ["7", "8", "10"],
    "minitest": ["11", "12"],
}


def tiny_image(path: Path, colour: tuple[int, int, int], size: int = 56, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, format=fmt)


def write_scienceqa(root: Path) -> Path:
    """problems.json (every field the original has), pid_splits.json and images/<split>/<pid>/image.png."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    problems = {}
    for pid, (question, choices, answer, hint, has_image, split) in PROBLEMS.items():
        problems[pid] = {
            "question": question,
            "choices": choices,
            "answer": answer,
            "hint": hint,
            "image": "image.png" if has_image else None,
            "task": "closed choice",
            "grade": "grade4",
            "subject": "natural science",
            "topic": "science-and-engineering-practices",
            "category": "Designing experiments",
            "skill": "Identify the experimental question",
            "lecture": "A lecture.",
            "solution": "A solution.",
            "split": split,
        }
        if has_image:
            tiny_image(root / "images" / split / pid / "image.png", (int(pid) * 17 % 256, 90, 160))
    (root / "problems.json").write_text(json.dumps(problems, indent=4))
    (root / "pid_splits.json").write_text(json.dumps(PID_SPLITS, indent=4))
    return root


# image name -> captions (one to five), in comment_number order
CAPTIONS = {
    "1000092795.jpg": ["Two boys play basketball .", "A boy holds a ball .", "Kids on a court ."],
    "1001773457.jpg": ["A man throws a football .", 'A player in a "Bulldogs" jersey .'],
    "1002674143.jpg": ["A girl runs a race ."],
    "1003163366.jpg": ["Two men box .", "Boxers fight .", "A boxing match .", "Men in a ring .", "A fight ."],
    "1007129816.jpg": ["A skier goes downhill .", "Snow and a skier ."],
    "1007320043.jpg": ["A cyclist rides .", "A man on a bike .", "A bike race .", "Cycling ."],
    "1009434119.jpg": ["A swimmer dives .", "Someone swims ."],
    "1012212859.jpg": ["A tennis player serves ."],
    "1015118661.jpg": ["Players chase a soccer ball .", "A soccer game ."],
    "1015584366.jpg": ["A climber on a rock wall .", "A woman climbs .", "Rock climbing ."],
}


def write_sports_captions(root: Path, captions: dict[str, list[str]] | None = None) -> Path:
    """results.csv as flickr30k ships it (`name| n| caption`, a space after each pipe) and images/."""
    root = Path(root)
    captions = CAPTIONS if captions is None else captions
    lines = ["image_name| comment_number| comment"]
    for index, (name, texts) in enumerate(captions.items()):
        lines += [f"{name}| {n}| {text}" for n, text in enumerate(texts)]
        tiny_image(root / "images" / name, (index * 25 % 256, 120, 60), fmt="JPEG")
    (root / "results.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
