"""LightningDataModules: a base that owns splits, reports and loaders, and the generic table layout.

A dataset subclasses `VLMDataModule` and implements `build_task()` and `read_split(split)`; everything
else (bad-sample accounting, the text from data.captions_file, the summary, the loaders, the late-bound
processor) is shared.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import lightning as L
from torch.utils.data import Dataset

from mmlearn.data.caption_table import apply_captions, read_captions
from mmlearn.data.collate import PromptCollator, TrainCollator
from mmlearn.data.folds import FoldSettings, refold
from mmlearn.data.lengths import TokenCounter, check_lengths
from mmlearn.data.modality import Modality
from mmlearn.data.policy import InputPolicy
from mmlearn.data.resumable import EpochRandomSampler, ResumableDataLoader, evaluation_sampler
from mmlearn.data.sample import BadSampleError, SplitReport, skip_record
from mmlearn.data.sampling import ClassBalancedSampler, LengthGroupedSampler
from mmlearn.data.table_reader import TableReader
from mmlearn.data.text_files import read_text, refuse_undecodable
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask, MultiLabelTask

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PREDICT = "predict"  # an unlabelled file (data.predict_file): answers only, never trained or scored on
# what each Lightning stage reads; setup() without a stage reads every available split
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": (PREDICT,)}
CLASSIFICATION_TASKS = {"multilabel": MultiLabelTask, "multiclass": MultiClassTask}


class SampleDataset(Dataset):
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def read_labels_file(path: str | Path, encoding: str) -> list[str]:
    text = refuse_undecodable(read_text(Path(path), encoding), Path(path), encoding)
    return [line.strip() for line in text.splitlines() if line.strip()]


class VLMDataModule(L.LightningDataModule):
    """Splits of samples; the processor and prompt format are connected by the model side."""

    def __init__(
        self,
        *,
        name: str,
        modality: Modality,
        on_bad_sample: str,
        encoding: str,
        max_image_pixels: int | None,
        image_background: list[int],
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        monitor: str,
        max_length: int | None,
        group_by_length: bool,
        megabatch_size: int,
        class_balanced: bool,
        pin_memory: bool,
        seed: int,
        root: str | None = None,
        prepare=None,
        captions_file: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.monitor = monitor
        self.root = root
        self.modality = modality
        self.inputs = InputPolicy.from_config(
            on_bad_sample=on_bad_sample,
            encoding=encoding,
            max_image_pixels=max_image_pixels,
            image_background=image_background,
        )
        self.on_bad_sample = on_bad_sample
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.max_length = max_length
        self.group_by_length = group_by_length
        self.megabatch_size = megabatch_size
        if class_balanced and group_by_length:
            raise ValueError("data.class_balanced and data.group_by_length cannot both be on")
        self.class_balanced = class_balanced
        self.pin_memory = pin_memory
        self.seed = seed
        self.prepare = prepare
        self.captions_csv = None if captions_file is None else Path(captions_file)
        if self.captions_csv is not None and not modality.text:
            raise ValueError(
                f"data.captions_file={captions_file} gives each sample's text, but modality={modality.name} "
                "reads no text: use modality=text or modality=text_image, or set data.captions_file=null"
            )
        self.splits: dict[str, list[Sample]] = {}
        self.lengths: dict[str, list[int]] = {}  # training tokens per sample, aligned with splits
        self.reports: dict[str, SplitReport] = {}
        self.processor = None
        self.prompt_format = None
        self.shots = None

    # --- what a dataset implements -------------------------------------------------------------
    def build_task(self):
        raise NotImplementedError

    def available_splits(self) -> tuple[str, ...]:
        return SPLITS

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        raise NotImplementedError

    def record_settings(self) -> dict:
        """Dataset choices that change the targets (label rule, threshold, ...), for data_summary.json."""
        return {}

    # --- shared ---------------------------------------------------------------------------------
    @cached_property
    def task(self):
        return self.build_task()

    def connect(self, processor, prompt_format, shots=None) -> None:
        """Late binding: the model side owns the processor and the prompt format. With them, each
        training sample's token count is known: counted once here, checked against `max_length`.
        Evaluation prompts are neither counted nor checked (nothing ever truncates them). `shots` (a
        callable giving a query's in-context examples) precedes every evaluation prompt."""
        self.processor = processor
        self.prompt_format = prompt_format
        self.shots = shots
        if "train" in self.splits and "train" not in self.lengths:
            samples = self.splits["train"]
            lengths = TokenCounter(processor, prompt_format, self.task)(samples)
            self._keep_within_max_length("train", samples, lengths)

    def _keep_within_max_length(self, split: str, samples: list[Sample], lengths: list[int]) -> None:
        kept, kept_lengths, too_long = check_lengths(samples, lengths, self.max_length)
        for sample, n in too_long:
            message = f"{sample.source or split}: sample {sample.id!r} needs {n} tokens (prompt, image "
            message += f"tokens and answer) but data.max_length={self.max_length}; image tokens are never cut"
            if self.on_bad_sample == "error":
                raise BadSampleError(message)
            self.reports[split].skipped.append(skip_record(sample.source, sample.id, "too_long", message))
        if not kept:
            raise ValueError(f"split {split!r} has no sample within data.max_length={self.max_length}")
        log.info("%s: %d..%d tokens per sample", split, min(kept_lengths), max(kept_lengths))
        self.splits[split], self.lengths[split] = kept, kept_lengths

    def prepare_data(self) -> None:
        """Runs once per node before setup: builds generated datasets such as the demo."""
        if self.prepare is not None:
            self.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Reads the splits a Lightning stage uses (every available split without a stage), each once:
        evaluating the test split reads neither train nor val."""
        names = self.task.metric_names()
        if self.monitor not in names:
            raise ValueError(
                f"data.monitor={self.monitor!r} is not a metric of this task; choose from {names}"
            )
        available = self.available_splits()
        wanted = available if stage is None else [s for s in STAGE_SPLITS[stage] if s in available]
        for split in wanted:
            if split not in self.splits:
                self.splits[split], self.reports[split] = self._read(split)

    @cached_property
    def caption_of(self) -> dict[str, str]:
        """data.captions_file's id -> caption (see caption_table), read once."""
        return read_captions(self.captions_csv, self.inputs)

    def _read(self, split: str) -> tuple[list[Sample], SplitReport]:
        samples, report = self.read_split(split)
        if self.captions_csv is not None:  # every reader's text becomes the caption of its id
            samples, report = apply_captions(samples, report, self.caption_of, self.captions_csv, self.inputs)
        if not samples:
            raise ValueError(f"split {split!r} ({report.file}) has no usable samples")
        log.info(
            "%s: %d rows read, %d samples, %d skipped, labels %s",
            split,
            report.read,
            len(samples),
            len(report.skipped),
            report.label_counts,
        )
        return samples, report

    def examples(self, split: str = "train") -> list[Sample]:
        """A split's samples as in-context examples: read if no stage has read it, and then not kept as
        a split (nothing trains on them, so their tokens are never counted)."""
        if split in self.splits:
            return self.splits[split]
        if split not in self.available_splits():
            raise ValueError(f"dataset {self.name!r} has no {split} split to draw in-context examples from")
        return self._read(split)[0]

    def summary(self) -> dict:
        out = {split: report.summary() for split, report in self.reports.items()}
        settings = self.record_settings()
        if self.captions_csv is not None:
            settings = {**settings, "captions_file": str(self.captions_csv)}
        if settings:
            out["settings"] = settings
        return out

    def skipped(self) -> list[dict]:
        return [dict(item, split=split) for split, report in self.reports.items() for item in report.skipped]

    def collator(self, split: str, train: bool):
        """The batches of a split; a dataset whose samples encode differently (conversations) overrides it."""
        if train:
            return TrainCollator(self.processor, self.prompt_format, self.task, inputs=self.inputs)
        return PromptCollator(
            self.processor, self.prompt_format, self.task, shots=self.shots, inputs=self.inputs
        )

    def _loader(self, split: str, train: bool) -> ResumableDataLoader:
        if self.processor is None:
            raise RuntimeError("call datamodule.connect(processor, prompt_format) before loading batches")
        if split not in self.splits:
            raise ValueError(f"dataset {self.name!r} has no {split} split")
        collator = self.collator(split, train)
        collator.split = split
        dataset = SampleDataset(self.splits[split])
        if not train:
            sampler = evaluation_sampler(dataset, self.trainer)
        elif self.class_balanced:
            sampler = ClassBalancedSampler(dataset, [s.labels for s in dataset.samples], seed=self.seed)
        elif self.group_by_length:
            sampler = LengthGroupedSampler(
                self.lengths[split],
                batch_size=self.batch_size,
                megabatch_size=self.megabatch_size,
                seed=self.seed,
            )
        else:
            sampler = EpochRandomSampler(dataset, seed=self.seed)
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collator,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory and self._on_gpu(),
        )

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Samples whose image failed to load in a worker (data.on_bad_sample=skip) are counted under
        their split here, in the main process, so data_summary.json and skipped_samples.jsonl list them."""
        for split, record in batch.pop("skipped", ()):
            log.warning("%s: %s (skipped while loading a batch)", record["source"], record["reason"])
            self.reports[split].skipped.append(record)
        return batch

    def _on_gpu(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def predict_dataloader(self):
        return self._loader(PREDICT, train=False)


class TableDataModule(VLMDataModule):
    """Seed 001's layout: one CSV/JSONL file per split with `text`, `image_path`, `labels`; and
    optionally a predict file of the same layout whose rows need no `labels`."""

    def __init__(
        self,
        *,
        train_file: str | None,
        val_file: str | None,
        test_file: str | None,
        predict_file: str | None,
        image_root: str,
        task: str,
        instruction: str,
        labels: list[str] | None,
        labels_file: str | None,
        fold: int | None,
        num_folds: int,
        val_fraction: float,
        split_seed: int,
        **common,
    ) -> None:
        super().__init__(**common)
        self.folds = FoldSettings(fold, num_folds, val_fraction, split_seed)
        if self.folds.enabled and (val_file is not None or test_file is not None or train_file is None):
            raise ValueError(
                "data.fold re-splits the rows of data.train_file into train/val/test: set data.train_file "
                f"and data.val_file=null data.test_file=null (got val_file={val_file}, test_file={test_file})"
            )
        if (labels is None) == (labels_file is None):
            raise ValueError("set exactly one of data.labels and data.labels_file")
        if task not in CLASSIFICATION_TASKS:
            raise ValueError(f"data.task must be one of {sorted(CLASSIFICATION_TASKS)}, got {task!r}")
        self.files = {"train": train_file, "val": val_file, "test": test_file, PREDICT: predict_file}
        self.image_root = image_root
        self.task_kind = task
        self.instruction = instruction
        self.labels = labels
        self.labels_file = labels_file

    def build_task(self):
        labels = list(self.labels) if self.labels is not None else None
        if labels is None:
            labels = read_labels_file(self.labels_file, self.inputs.encoding)
        return CLASSIFICATION_TASKS[self.task_kind](labels, self.instruction)

    def available_splits(self) -> tuple[str, ...]:
        if self.folds.enabled:
            return ("train", "val", "test") + ((PREDICT,) if self.files[PREDICT] else ())
        return tuple(split for split, path in self.files.items() if path is not None)

    def record_settings(self) -> dict:
        return self.folds.recorded()

    @cached_property
    def folded(self) -> dict[str, tuple[list[Sample], SplitReport]]:
        return refold(*self._read_file("train"), self.folds)

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        if self.folds.enabled and split != PREDICT:
            return self.folded[split]
        return self._read_file(split)

    def _read_file(self, split: str) -> tuple[list[Sample], SplitReport]:
        reader = TableReader(
            image_root=Path(self.image_root),
            labels=self.task.labels,
            task=self.task_kind,
            modality=self.modality,
            inputs=self.inputs,
            labelled=split != PREDICT,
        )
        return reader.read(Path(self.files[split]))
