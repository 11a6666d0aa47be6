"""MMHS150K as downloaded: `MMHS150K_GT.json`, `splits/<split>_ids.txt`, `img_resized/<id>.jpg` and the
optional OCR in `img_txt/<id>.json`.

Each tweet carries three annotator label ids (0 NotHate, 1..5 the hate classes). Published works turn
them into targets differently, so the rule is a config choice recorded in data_summary.json:
union (any annotator, seed 001), majority (at least two annotators) or binary (hate when at least two
annotators chose any hate class).
"""

from __future__ import annotations

from collections import Counter
from functools import cached_property
from pathlib import Path

from mmlearn.data.datamodule import VLMDataModule
from mmlearn.data.datasets._files import id_lines, read_json
from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask, MultiLabelTask

LABEL_RULES = ("union", "majority", "binary")
ANNOTATORS = 3


def hate_labels(ids: list[int], names: list[str], rule: str, binary_labels: list[str]) -> tuple[str, ...]:
    """Targets from the three annotator ids under one rule (ids already validated)."""
    hate = [i for i in ids if i != 0]
    if rule == "binary":
        return (binary_labels[1] if len(hate) >= 2 else binary_labels[0],)
    votes = Counter(hate)
    needed = 1 if rule == "union" else 2
    return tuple(names[i - 1] for i in sorted(votes) if votes[i] >= needed)


class MMHS150K(VLMDataModule):
    def __init__(
        self,
        *,
        root: str,
        label_rule: str,
        labels: list[str],
        binary_labels: list[str],
        instruction: str,
        binary_instruction: str,
        use_ocr: bool,
        ocr_format: str,
        gt_file: str,
        split_files: dict[str, str],
        image_dir: str,
        ocr_dir: str,
        **common,
    ) -> None:
        super().__init__(root=root, **common)
        if label_rule not in LABEL_RULES:
            raise ValueError(f"data.label_rule must be one of {LABEL_RULES}, got {label_rule!r}")
        if len(binary_labels) != 2:
            raise ValueError(f"data.binary_labels needs [not-hate, hate] names, got {binary_labels}")
        self.label_rule = label_rule
        self.labels = list(labels)
        self.binary_labels = list(binary_labels)
        self.instruction = instruction
        self.binary_instruction = binary_instruction
        self.use_ocr = use_ocr
        self.ocr_format = ocr_format
        self.gt_file = Path(root) / gt_file
        self.split_files = {split: Path(root) / name for split, name in split_files.items()}
        self.image_dir = Path(root) / image_dir
        self.ocr_dir = Path(root) / ocr_dir
        self.ocr_attached: dict[str, int] = {}

    def build_task(self):
        if self.label_rule == "binary":
            return MultiClassTask(self.binary_labels, self.binary_instruction)
        return MultiLabelTask(self.labels, self.instruction)

    def available_splits(self) -> tuple[str, ...]:
        return tuple(self.split_files)

    def record_settings(self) -> dict:
        return {
            "label_rule": self.label_rule,
            "labels": self.task.labels,
            "use_ocr": self.use_ocr,
            "ocr_attached": dict(self.ocr_attached),
        }

    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        records = self.ground_truth
        path = self.split_files[split]
        attached = 0

        def to_sample(row: dict, source: str) -> Sample:
            nonlocal attached
            tweet_id = row["id"]
            if tweet_id not in records:
                raise BadSampleError(f"tweet id {tweet_id!r} is not a key of {self.gt_file}")
            record = records[tweet_id]
            labels = hate_labels(
                self.annotations(tweet_id, record), self.labels, self.label_rule, self.binary_labels
            )
            text = None
            if self.modality.text:
                text, ocr = self.text(tweet_id, record)
                attached += ocr
            image_path = None
            if self.modality.image:
                image_path = self.inputs.image_file(self.image_dir, f"{tweet_id}.jpg")
            return Sample(id=tweet_id, text=text, image_path=image_path, labels=labels, source=source)

        samples, report = self.inputs.collect(id_lines(path, self.inputs.encoding), to_sample, file=str(path))
        self.ocr_attached[split] = attached
        return samples, report

    @cached_property
    def ground_truth(self) -> dict:
        data = read_json(self.gt_file, "MMHS150K ground truth", self.inputs.encoding)
        if not isinstance(data, dict):
            raise ValueError(f"{self.gt_file}: expected an object keyed by tweet id")
        return data

    def annotations(self, tweet_id: str, record: dict) -> list[int]:
        where = f"{self.gt_file}[{tweet_id!r}]['labels']"
        ids = record.get("labels") if isinstance(record, dict) else None
        if not isinstance(ids, list) or len(ids) != ANNOTATORS:
            raise BadSampleError(f"{where} must list {ANNOTATORS} annotator label ids, got {ids!r}")
        top = len(self.labels)
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i <= top]
        if bad:
            raise BadSampleError(f"{where}: label id(s) {bad} out of range 0..{top} in {ids}")
        return ids

    def text(self, tweet_id: str, record: dict) -> tuple[str, int]:
        """The tweet text, with the image's OCR text appended when asked for and present."""
        text = str(record.get("tweet_text") or "").strip()
        ocr = self.ocr(tweet_id) if self.use_ocr else ""
        if ocr:
            text = self.ocr_format.format(text=text, ocr=ocr)
        if not text:
            raise BadSampleError(
                f"{self.gt_file}[{tweet_id!r}]: empty tweet_text, but the modality uses text"
            )
        return text, int(bool(ocr))

    def ocr(self, tweet_id: str) -> str:
        path = self.ocr_dir / f"{tweet_id}.json"
        if not path.is_file():
            return ""  # OCR exists for only about 40% of the images
        try:
            data = read_json(path, "OCR file", self.inputs.encoding)
        except ValueError as err:
            raise BadSampleError(str(err)) from err
        if not isinstance(data, dict) or not isinstance(data.get("img_text"), str):
            raise BadSampleError(f"{path}: expected an object with a string 'img_text'")
        return data["img_text"].strip()
