"""CrisisMMD v2.0 as downloaded: the agreed-label TSVs under `crisismmd_datasplit_agreed_label/` and the
images under `data_image/`, with `image` paths relative to the dataset root.

A tweet can have several images (several rows share a tweet_id). Text-only keeps one sample per tweet
(its other rows are counted as merged, after checking they agree on the label); image and text+image
keep one sample per image. Text and text+image use `label_text`, image-only uses `label_image`.
"""

from __future__ import annotations

from pathlib import Path

from mmlearn.data.datamodule import VLMDataModule
from mmlearn.data.datasets._files import tsv_rows
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask

COLUMNS = (
    "event_name",
    "tweet_id",
    "image_id",
    "tweet_text",
    "image",
    "label",
    "label_text",
    "label_image",
    "label_text_image",
)


class CrisisMMD(VLMDataModule):
    def __init__(
        self,
        *,
        root: str,
        task_name: str,
        split_dir: str,
        file_pattern: str,
        split_names: dict[str, str],
        labels: list[str],
        label_merge: dict[str, str],
        instruction: str,
        **common,
    ) -> None:
        super().__init__(root=root, **common)
        stray = {raw: to for raw, to in label_merge.items() if to not in labels}
        if stray:
            raise ValueError(f"data.label_merge maps to labels outside data.labels {labels}: {stray}")
        clash = sorted(set(label_merge) & set(labels))
        if clash:
            raise ValueError(f"data.label_merge renames labels that are in data.labels: {clash}")
        self.task_name = task_name
        self.labels = list(labels)
        self.label_merge = dict(label_merge)
        self.instruction = instruction
        self.files = {
            split: Path(root) / split_dir / file_pattern.format(task=task_name, split=name)
            for split, name in split_names.items()
        }

    @property
    def label_column(self) -> str:
        return "label_text" if self.modality.text else "label_image"

    def build_task(self):
        return MultiClassTask(self.labels, self.instruction)

    def available_splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    def record_settings(self) -> dict:
        return {
            "task": self.task_name,
            "label_column": self.label_column,
            "labels": self.labels,
            "label_merge": self.label_merge,
            "one_sample_per": "tweet" if self.modality.name == "text" else "image",
        }

    def label(self, row: dict) -> str:
        raw = row[self.label_column].strip()
        label = self.label_merge.get(raw, raw)
        if label not in self.labels:
            raise BadSampleError(
                f"unknown label {raw!r} in column {self.label_column}; "
                f"allowed: {self.labels}, merged: {sorted(self.label_merge)}"
            )
        return label

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        path = self.files[split]
        first_seen: dict[str, tuple[str, str]] = {}  # tweet_id -> (label, source), text-only dedup

        def to_sample(row: dict, source: str) -> Sample | None:
            label = self.label(row)
            tweet_id = row["tweet_id"].strip()
            text = row["tweet_text"].strip() if self.modality.text else None
            if self.modality.text and not text:
                raise BadSampleError("empty tweet_text, but the modality uses text")
            if self.modality.name == "text":
                if tweet_id in first_seen:
                    seen_label, seen_source = first_seen[tweet_id]
                    if seen_label != label:
                        raise BadSampleError(
                            f"tweet {tweet_id} is labelled {label!r} here but {seen_label!r} at {seen_source}"
                        )
                    return None
                first_seen[tweet_id] = (label, source)
            image_path = None
            if self.modality.image:
                image_path = self.inputs.image_file(Path(self.root), row["image"].strip())
            sample_id = tweet_id if self.modality.name == "text" else row["image_id"].strip()
            return Sample(id=sample_id, text=text, image_path=image_path, labels=(label,), source=source)

        return self.inputs.collect(tsv_rows(path, COLUMNS, self.inputs.encoding), to_sample, file=str(path))
