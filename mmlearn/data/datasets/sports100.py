"""100 Sports Image Classification (Kaggle; seed 004) as it unpacks: `<split>/<sport name>/<file>.jpg`.

The label set is the train split's class folders, sorted; a class folder elsewhere that train lacks is
a bad row for each of its files. `sports.csv` repeats the folder layout and is not read. The dataset has
no text, so only modality=image is accepted.
"""

from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path

from mmlearn.data.datamodule import SPLITS, VLMDataModule
from mmlearn.data.sample import BadSampleError, SplitReport, skip_record
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask


class Sports100DataModule(VLMDataModule):
    def __init__(
        self,
        *,
        split_dirs: dict[str, str | None],
        instruction: str,
        max_per_class: int | None = None,
        **common,
    ) -> None:
        super().__init__(**common)
        if self.modality.name != "image":
            raise ValueError(
                f"sports100 has images only (no text); modality={self.modality.name} is not possible: "
                "use modality=image"
            )
        unknown = sorted(set(split_dirs) - set(SPLITS))
        if unknown or not split_dirs.get("train"):
            raise ValueError(
                f"data.split_dirs maps {list(SPLITS)} to folders and needs train; got {split_dirs}"
            )
        if max_per_class is not None and max_per_class < 1:
            raise ValueError(f"data.max_per_class must be null or at least 1; got {max_per_class}")
        self.split_dirs = split_dirs
        self.instruction = instruction
        self.max_per_class = max_per_class

    def folder(self, split: str) -> Path:
        path = Path(self.root) / self.split_dirs[split]
        if not path.is_dir():
            raise FileNotFoundError(f"{split} folder not found: {path}")
        return path

    @cached_property
    def labels(self) -> list[str]:
        train = self.folder("train")
        labels = sorted(p.name for p in train.iterdir() if p.is_dir())
        if not labels:
            raise ValueError(f"{train} holds no class folders")
        return labels

    def build_task(self):
        return MultiClassTask(self.labels, self.instruction)

    def available_splits(self) -> tuple[str, ...]:
        return tuple(split for split in SPLITS if self.split_dirs.get(split))

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        folder = self.folder(split)
        rows = (
            (str(path), {"id": str(path.relative_to(folder.parent))}) for path in sorted(folder.rglob("*"))
        )
        rows = ((source, row) for source, row in rows if not Path(source).is_dir())
        samples, report = self.inputs.collect(rows, self._sample, file=str(folder))
        if split == "train" and self.max_per_class is not None:
            samples = self._cap_per_class(samples, report)
        return samples, report

    def _cap_per_class(self, samples: list[Sample], report: SplitReport) -> list[Sample]:
        """Keep a seeded random `max_per_class` training images of each class; the rest are listed as skipped."""
        order = list(range(len(samples)))
        random.Random(self.seed).shuffle(order)
        kept, seen = set(), {}
        for i in order:
            label = samples[i].labels[0]
            if seen.get(label, 0) < self.max_per_class:
                kept.add(i)
                seen[label] = seen.get(label, 0) + 1
        for i, sample in enumerate(samples):
            if i not in kept:
                message = f"beyond data.max_per_class={self.max_per_class} images of {sample.labels[0]!r}"
                report.skipped.append(skip_record(sample.source, sample.id, "max_per_class", message))
        report.label_counts = dict(sorted(seen.items()))
        return [sample for i, sample in enumerate(samples) if i in kept]

    def record_settings(self) -> dict:
        return {"max_per_class": self.max_per_class} if self.max_per_class is not None else {}

    def _sample(self, row: dict, source: str) -> Sample:
        path = Path(source)
        parts = Path(row["id"]).parts  # split folder, class folder, file
        if len(parts) != 3:
            raise BadSampleError("not a file directly inside a class folder")
        if parts[1] not in self.task.labels:
            raise BadSampleError(f"class folder {parts[1]!r} is not a train class folder")
        self.inputs.check_image(path)
        return Sample(id=row["id"], text=None, image_path=path, labels=(parts[1],), source=source)
