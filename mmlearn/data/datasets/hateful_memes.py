"""Hateful Memes as downloaded: `train.jsonl`, `dev_seen.jsonl`, `test_seen.jsonl` (older releases:
`dev.jsonl`, `test.jsonl`) with `id`, `img`, `label`, `text`, and the images under `img/`.

The unseen test files carry no `label`. Training and evaluation refuse them; they are read only
through `predict_file`, which yields a `predict` split of samples without gold labels.
"""

from __future__ import annotations

from pathlib import Path

from mmlearn.data.datamodule import PREDICT, VLMDataModule
from mmlearn.data.datasets._files import jsonl_rows
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask


class UnlabelledFileError(ValueError):
    pass


class HatefulMemes(VLMDataModule):
    def __init__(
        self,
        *,
        root: str,
        split_files: dict[str, str],
        predict_file: str | None,
        labels: list[str],
        instruction: str,
        **common,
    ) -> None:
        super().__init__(root=root, **common)
        if len(labels) != 2:
            raise ValueError(f"data.labels names label 0 and label 1, got {labels}")
        self.files = {split: Path(root) / name for split, name in split_files.items()}
        if predict_file is not None:
            self.files[PREDICT] = Path(root) / predict_file
        self.labels = list(labels)
        self.instruction = instruction

    def build_task(self):
        return MultiClassTask(self.labels, self.instruction)

    def available_splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    def record_settings(self) -> dict:
        predict = self.files.get(PREDICT)
        return {"labels": self.labels, "predict_file": None if predict is None else str(predict)}

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        path = self.files[split]
        rows = list(jsonl_rows(path, self.inputs.encoding))
        labelled = split != PREDICT
        if labelled and rows and not any("label" in row for _, row in rows):
            raise UnlabelledFileError(
                f"{path} is unlabelled (no row has a 'label', like the unseen test files): it cannot be "
                f"used for {split}; read it for prediction only with data.predict_file"
            )

        def to_sample(row: dict, source: str) -> Sample:
            missing = [key for key in ("id", "img", "text") if key not in row]
            if missing:
                raise BadSampleError(f"missing key(s) {missing}")
            labels = self.label(row, path) if labelled else ()
            text = str(row["text"]).strip() if self.modality.text else None
            if self.modality.text and not text:
                raise BadSampleError("empty text, but the modality uses text")
            image_path = None
            if self.modality.image:
                image_path = self.inputs.image_file(Path(self.root), str(row["img"]))
            return Sample(id=str(row["id"]), text=text, image_path=image_path, labels=labels, source=source)

        return self.inputs.collect(rows, to_sample, file=str(path))

    def label(self, row: dict, path: Path) -> tuple[str]:
        if "label" not in row:
            raise BadSampleError(
                f"unlabelled row (no 'label') in {path}; unlabelled files are read only as data.predict_file"
            )
        value = row["label"]
        if type(value) is not int or value not in (0, 1):
            raise BadSampleError(f"label must be 0 or 1, got {value!r}")
        return (self.labels[value],)
