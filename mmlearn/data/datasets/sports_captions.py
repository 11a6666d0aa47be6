"""Sports captions (the flickr30k sports subset of seed 004) as it ships: a pipe-delimited file with the
header `image_name| comment_number| comment` (values carry leading spaces), one to five captions per
image, and the images in a folder beside it.

One sample per image holds all its captions as references. There is no official split: images are
shuffled with `split_seed` and cut by `split_fractions`; the image lists are recorded in data_summary.json.
Training uses one sample per caption (`train_on: each_caption`: every human caption is a valid target,
and the image is seen with each) or only the first caption (`first_caption`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mmlearn.data.datamodule import SPLITS, VLMDataModule
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.data.text_files import read_text, refuse_undecodable
from mmlearn.sample import Sample
from mmlearn.tasks.captioning import CaptioningTask

HEADER = ["image_name", "comment_number", "comment"]
TRAIN_ON = ("each_caption", "first_caption")


@dataclass(frozen=True)
class CaptionLine:
    number: int  # line number in the file (the header is line 1)
    image: str
    comment_number: int = -1
    comment: str = ""
    error: str | None = None


def read_caption_lines(path: Path, encoding: str) -> list[CaptionLine]:
    """Every non-blank line after the header; a line that cannot be used carries its error."""
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    lines = read_text(path, encoding).removeprefix("\ufeff").splitlines()
    header = (
        [field.strip() for field in refuse_undecodable(lines[0], path, encoding).split("|")] if lines else []
    )
    if header != HEADER:
        raise BadSampleError(f"{path}:1: header must be {'| '.join(HEADER)!r}, found {header}")
    out, seen = [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split("|", 2)]
        image = fields[0]
        if len(fields) != 3:
            error = f"expected 3 pipe-separated fields ({'| '.join(HEADER)}), found {len(fields)}"
        elif not image or not fields[2]:
            error = "empty image_name or comment"
        elif not fields[1].isdigit():
            error = f"comment_number {fields[1]!r} is not a non-negative integer"
        elif (image, int(fields[1])) in seen:
            error = f"duplicate comment_number {fields[1]} for image {image!r}"
        else:
            seen.add((image, int(fields[1])))
            out.append(CaptionLine(number, image, int(fields[1]), fields[2]))
            continue
        out.append(CaptionLine(number, image, error=error))
    return out


def split_images(names: list[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Shuffle the sorted names with `seed` and cut them into train/val/test by `fractions`."""
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    n_val, n_test = (round(fractions[s] * len(shuffled)) for s in ("val", "test"))
    n_train = len(shuffled) - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"{len(shuffled)} images cannot be split by {fractions} with every split non-empty")
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }


class SportsCaptionsDataModule(VLMDataModule):
    def __init__(
        self,
        *,
        references_file: str,
        image_dir: str,
        split_fractions: dict[str, float],
        split_seed: int,
        train_on: str,
        instruction: str,
        **common,
    ) -> None:
        super().__init__(**common)
        if not self.modality.image:
            raise ValueError("captioning describes an image: use modality=image or modality=text_image")
        if set(split_fractions) != set(SPLITS) or not all(f > 0 for f in split_fractions.values()):
            raise ValueError(
                f"data.split_fractions needs positive train, val and test, got {split_fractions}"
            )
        if not math.isclose(sum(split_fractions.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"data.split_fractions must sum to 1, got {split_fractions}")
        if train_on not in TRAIN_ON:
            raise ValueError(f"data.train_on must be one of {TRAIN_ON}, got {train_on!r}")
        self.references_file = Path(references_file)
        self.image_dir = Path(image_dir)
        self.split_fractions = dict(split_fractions)
        self.split_seed = split_seed
        self.train_on = train_on
        self.instruction = instruction
        self.caption_counts: dict[str, int] = {}

    @cached_property
    def lines(self) -> list[CaptionLine]:
        return read_caption_lines(self.references_file, self.inputs.encoding)

    @cached_property
    def split_of_image(self) -> dict[str, str]:
        names = sorted({line.image for line in self.lines if line.error is None})
        parts = split_images(names, self.split_fractions, self.split_seed)
        return {name: split for split, names in parts.items() for name in names}

    def build_task(self) -> CaptioningTask:
        captions = [line.comment for line in self.lines if line.error is None]
        if not captions:
            raise ValueError(f"{self.references_file} holds no usable caption")
        return CaptioningTask(self.instruction, max(captions, key=len))

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        samples, report = self.inputs.collect(
            self._rows(split), self._sample, file=str(self.references_file), count_labels=False
        )
        self.caption_counts[split] = sum(len(s.labels) for s in samples)
        if split == "train" and self.train_on == "each_caption":
            samples = [
                Sample(f"{s.id}#{k}", None, s.image_path, (caption,), s.source)
                for s in samples
                for k, caption in enumerate(s.labels)
            ]
        return samples, report

    def _rows(self, split: str):
        """Unusable lines one by one (those naming no image with a usable caption count in train), then
        one row per image."""
        by_image: dict[str, list[CaptionLine]] = {}
        for line in self.lines:
            if self.split_of_image.get(line.image, "train") != split:
                continue
            if line.error is not None:
                yield f"{self.references_file}:{line.number}", {"id": line.image, "__error__": line.error}
            else:
                by_image.setdefault(line.image, []).append(line)
        for image, group in by_image.items():
            yield f"{self.references_file}:{group[0].number}", {"id": image, "lines": group}

    def _sample(self, row: dict, source: str) -> Sample:
        path = self.inputs.image_file(self.image_dir, row["id"])
        captions = tuple(line.comment for line in sorted(row["lines"], key=lambda x: x.comment_number))
        return Sample(id=row["id"], text=None, image_path=path, labels=captions, source=source)

    def record_settings(self) -> dict:
        images = {split: sorted(n for n, s in self.split_of_image.items() if s == split) for split in SPLITS}
        return {
            "split_seed": self.split_seed,
            "split_fractions": self.split_fractions,
            "train_on": self.train_on,
            "images_assigned": {split: len(names) for split, names in images.items()},
            "captions_per_split": dict(self.caption_counts),
            "training_samples": len(self.splits.get("train", [])),
            "split_images": images,
        }
