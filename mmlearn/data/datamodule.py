"""LightningDataModule over split files in the generic table layout (CSV/JSONL)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Dataset

from mmlearn.data.collate import PromptCollator, TrainCollator
from mmlearn.data.modality import Modality
from mmlearn.data.sample import Sample, SplitReport
from mmlearn.data.table_reader import TableReader
from mmlearn.tasks import MultiClassTask, MultiLabelTask

log = logging.getLogger(__name__)

TASKS = {"multilabel": MultiLabelTask, "multiclass": MultiClassTask}


class SampleDataset(Dataset):
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        return {
            "id": s.id,
            "text": s.text,
            "image_path": s.image_path,
            "labels": s.labels,
            "source": s.source,
        }


def read_labels_file(path: str | Path) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


class TableDataModule(L.LightningDataModule):
    """Splits in seed 001's layout; the processor and prompt renderer are connected by the model side."""

    def __init__(
        self,
        *,
        name: str,
        train_file: str | None,
        val_file: str | None,
        test_file: str | None,
        image_root: str,
        task: str,
        instruction: str,
        modality: Modality,
        labels: list[str] | None,
        labels_file: str | None,
        on_bad_sample: str,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        prepare=None,
        root: str | None = None,
    ) -> None:
        super().__init__()
        if (labels is None) == (labels_file is None):
            raise ValueError("set exactly one of data.labels and data.labels_file")
        if task not in TASKS:
            raise ValueError(f"data.task must be one of {sorted(TASKS)}, got {task!r}")
        self.name = name
        self.root = root
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.image_root = image_root
        self.task_kind = task
        self.instruction = instruction
        self.modality = modality
        self.labels = labels
        self.labels_file = labels_file
        self.on_bad_sample = on_bad_sample
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.prepare = prepare
        self.splits: dict[str, list[Sample]] = {}
        self.reports: dict[str, SplitReport] = {}
        self.processor = None
        self.renderer = None

    @property
    def task(self):
        labels = list(self.labels) if self.labels is not None else read_labels_file(self.labels_file)
        return TASKS[self.task_kind](labels, self.instruction)

    def connect(self, processor, renderer) -> None:
        """Late binding: the model side owns the processor and the prompt format."""
        self.processor = processor
        self.renderer = renderer

    def prepare_data(self) -> None:
        """Runs once per node before setup: builds generated datasets such as the demo."""
        if self.prepare is not None:
            self.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        task = self.task
        reader = TableReader(
            image_root=Path(self.image_root),
            labels=task.labels,
            task=self.task_kind,
            modality=self.modality,
            on_bad_sample=self.on_bad_sample,
        )
        for split, path in self.files.items():
            if path is None:
                continue
            samples, report = reader.read(Path(path))
            if not samples:
                raise ValueError(f"split {split!r} ({path}) has no usable samples")
            self.splits[split], self.reports[split] = samples, report
            log.info(
                "%s: %d samples read, %d skipped, labels %s",
                split,
                report.read,
                len(report.skipped),
                report.label_counts,
            )

    def summary(self) -> dict:
        return {split: report.summary() for split, report in self.reports.items()}

    def skipped(self) -> list[dict]:
        return [dict(item, split=split) for split, report in self.reports.items() for item in report.skipped]

    def _loader(self, split: str, train: bool) -> DataLoader:
        if self.processor is None:
            raise RuntimeError("call datamodule.connect(processor, renderer) before loading batches")
        if split not in self.splits:
            raise ValueError(f"no {split} split configured (data.{split}_file is null)")
        collator = (TrainCollator if train else PromptCollator)(self.processor, self.renderer, self.task)
        return DataLoader(
            SampleDataset(self.splits[split]),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=collator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)
