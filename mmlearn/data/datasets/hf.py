"""Any classification dataset the Hugging Face `datasets` library reads from disk.

`loader: load_from_disk` opens a saved DatasetDict; any other value is a `datasets` builder
(`imagefolder`, `parquet`, `csv`, `json`, ...) run on `root` (and `data_files`), whose Arrow cache lives
in `cache_dir`. Columns and split names are mapped in config. Images stay in the memory-mapped Arrow
files: a sample holds an `ArrowImageRef` and the loader decodes it when it batches it. `predict_file`
(a file or directory under `root`, read with the same loader) is a `predict` split without labels.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from mmlearn.data.datamodule import CLASSIFICATION_TASKS, PREDICT, SPLITS, VLMDataModule
from mmlearn.data.folds import FoldSettings, refold
from mmlearn.data.images import ArrowImageRef
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.sample import Sample


def _class_names(feature) -> list[str] | None:
    """Names of a ClassLabel, or of a list of ClassLabels (multi-label), else None."""
    from datasets import ClassLabel

    inner = getattr(feature, "feature", feature)  # Sequence / List of ClassLabel
    return list(inner.names) if isinstance(inner, ClassLabel) else None


class HFDataModule(VLMDataModule):
    def __init__(
        self,
        *,
        loader: str,
        data_files: dict[str, str | list[str]] | None,
        cache_dir: str | None,
        splits: dict[str, str | None],
        predict_file: str | None,
        text_column: str | None,
        image_column: str | None,
        label_column: str,
        id_column: str | None,
        labels: list[str] | None,
        task: str,
        instruction: str,
        fold: int | None,
        num_folds: int,
        val_fraction: float,
        split_seed: int,
        **common,
    ) -> None:
        super().__init__(**common)
        self.folds = FoldSettings(fold, num_folds, val_fraction, split_seed)
        if self.folds.enabled and (splits.get("val") or splits.get("test")):
            raise ValueError(
                "data.fold re-splits the dataset's train split into train/val/test: set "
                f"data.splits.val=null data.splits.test=null (got {splits})"
            )
        if task not in CLASSIFICATION_TASKS:
            raise ValueError(f"data.task must be one of {sorted(CLASSIFICATION_TASKS)}, got {task!r}")
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown or not splits.get("train"):
            raise ValueError(f"data.splits maps {list(SPLITS)} to the dataset's split names; got {splits}")
        if self.modality.text and not text_column:
            raise ValueError(f"modality={self.modality.name} needs data.text_column")
        if self.modality.image and not image_column:
            raise ValueError(f"modality={self.modality.name} needs data.image_column")
        self.loader = loader
        self.data_files = data_files
        self.cache_dir = cache_dir
        self.split_names = splits
        self.predict_file = predict_file
        self.text_column = text_column if self.modality.text else None
        self.image_column = image_column if self.modality.image else None
        self.label_column = label_column
        self.id_column = id_column
        self.configured_labels = labels
        self.task_kind = task
        self.instruction = instruction

    @cached_property
    def dataset(self):
        import datasets

        if self.loader == "load_from_disk":
            loaded = datasets.load_from_disk(str(self.root))
        else:
            loaded = datasets.load_dataset(
                self.loader, data_dir=str(self.root), data_files=self.data_files, cache_dir=self.cache_dir
            )
        if not isinstance(loaded, datasets.DatasetDict):
            raise ValueError(
                f"{self.root} holds a single Dataset; data.hf needs a DatasetDict of named splits"
            )
        return loaded

    @cached_property
    def predict_dataset(self):
        """`predict_file` read as `root` is: a saved dataset, or a builder's input file or directory."""
        import datasets

        path = Path(self.root) / self.predict_file
        if self.loader == "load_from_disk":
            loaded = datasets.load_from_disk(str(path))
        else:
            where = {"data_files": str(path)} if path.is_file() else {"data_dir": str(path)}
            loaded = datasets.load_dataset(self.loader, cache_dir=self.cache_dir, **where)
        if isinstance(loaded, datasets.DatasetDict):
            if len(loaded) != 1:
                raise ValueError(f"data.predict_file={path} holds the splits {sorted(loaded)}: name one")
            (loaded,) = loaded.values()
        return loaded

    def _name(self, split: str) -> str:
        return self.predict_file if split == PREDICT else self.split_names[split]

    def _split(self, split: str):
        if split == PREDICT:
            data = self.predict_dataset
        else:
            name = self.split_names[split]
            if name not in self.dataset:
                raise ValueError(
                    f"{self.root}: no split {name!r} (data.splits.{split}); it has {sorted(self.dataset)}"
                )
            data = self.dataset[name]
        keys = ("text_column", "image_column", "id_column")
        for key in keys if split == PREDICT else (*keys, "label_column"):
            column = getattr(self, key)
            if column is not None and column not in data.column_names:
                raise ValueError(
                    f"{self.root} split {self._name(split)!r} has no column {column!r} (data.{key}); "
                    f"columns: {data.column_names}"
                )
        return data

    @cached_property
    def labels(self) -> list[str]:
        names = _class_names(self._split("train").features[self.label_column])
        if names is not None and self.configured_labels is not None:
            raise ValueError(
                f"column {self.label_column!r} is a ClassLabel with names {names}: set data.labels=null"
            )
        if names is None and self.configured_labels is None:
            raise ValueError(f"column {self.label_column!r} is not a ClassLabel: set data.labels")
        return names if names is not None else list(self.configured_labels)

    def build_task(self):
        return CLASSIFICATION_TASKS[self.task_kind](self.labels, self.instruction)

    def available_splits(self) -> tuple[str, ...]:
        named = ("train", "val", "test") if self.folds.enabled else ()
        named = named or tuple(split for split in SPLITS if self.split_names.get(split))
        return named if self.predict_file is None else (*named, PREDICT)

    def record_settings(self) -> dict:
        return self.folds.recorded()

    @cached_property
    def folded(self) -> dict[str, tuple[list[Sample], SplitReport]]:
        return refold(*self._read_named("train"), self.folds)

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        if self.folds.enabled and split != PREDICT:
            return self.folded[split]
        return self._read_named(split)

    def _read_named(self, split: str) -> tuple[list[Sample], SplitReport]:
        data = self._split(split)
        label = self.label_column if split != PREDICT else None  # a predict file's labels are not read
        columns = [c for c in (self.id_column, self.text_column, label) if c is not None]
        table = data.select_columns(columns).to_dict()
        images = self._images(data)
        where = f"{self.root}[{self._name(split)}]"
        rows = (
            (f"{where}:{index}", {"index": index, **{c: table[c][index] for c in columns}})
            for index in range(len(data))
        )
        return self.inputs.collect(
            rows, lambda row, source: self._sample(row, source, split, images), file=where
        )

    def _images(self, data):
        """The image column alone and undecoded: what an ArrowImageRef reads one row of."""
        if self.image_column is None:
            return None
        from datasets import Image

        images = data.select_columns([self.image_column])
        if isinstance(images.features[self.image_column], Image):
            images = images.cast_column(self.image_column, Image(decode=False))
        return images

    def _sample(self, row: dict, source: str, split: str, images) -> Sample:
        index = row["index"]
        prefix = PREDICT if split == PREDICT else self.split_names[split]
        sample_id = f"{prefix}-{index}" if self.id_column is None else str(row[self.id_column])
        text = None
        if self.text_column is not None:
            text = (row[self.text_column] or "").strip()
            if not text:
                raise BadSampleError(f"empty {self.text_column!r}, but the modality uses text")
        image = None
        if images is not None:
            image = ArrowImageRef(images, index, base_dir=Path(self.root))
            self.inputs.check_image(image)
        labels = () if split == PREDICT else self._labels(row[self.label_column])
        return Sample(id=sample_id, text=text, image_path=image, labels=labels, source=source)

    def _labels(self, raw) -> tuple[str, ...]:
        items = raw if isinstance(raw, list) else [raw]
        if self.task_kind == "multiclass" and (isinstance(raw, list) or raw is None):
            raise BadSampleError(f"a multiclass row needs exactly one label, got {raw!r}")
        out = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise BadSampleError(f"label {item!r} is neither a class index nor a name")
            if isinstance(item, int) and not 0 <= item < len(self.labels):
                raise BadSampleError(f"label index {item} is outside the {len(self.labels)} classes")
            label = self.labels[item] if isinstance(item, int) else item
            if label not in self.labels:
                raise BadSampleError(f"unknown label {label!r}; allowed: {self.labels}")
            out.append(label)
        return tuple(out)
