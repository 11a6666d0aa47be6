"""PerceptSent (seed 003) as it ships: `dataset.json` of annotation tasks and one image file per id.

Each entry of `tasks` is one worker's assignment; its responses (`image_resps` in the authors' reader,
`PerceptSent/Dataset.py`; the key is configurable) each carry an image `id`, a `sentiment` and
`perceptions`. Every response is one vote. Votes are mapped to the problem's classes first (P5, P3,
P2+, P2-: maps in config) and an image is kept when one class has at least `alpha` votes, as the authors'
"dominant" rule does; images below that are excluded by the rule and counted, not treated as bad rows.
There is no official split: test is one fold of a seeded, stratified k-fold over the kept images.
Text comes only from a captions CSV (data.captions_file, read by every dataset: see VLMDataModule); seed
003 also classifies MLLM captions of the images.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cached_property
from pathlib import Path

from mmlearn.data.datamodule import VLMDataModule
from mmlearn.data.folds import cross_validation_splits
from mmlearn.data.sample import BadSampleError, SplitReport, skip_record
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask

SENTIMENTS = ("Negative", "SlightlyNegative", "Neutral", "SlightlyPositive", "Positive")
# below_agreement: images whose top class has fewer than alpha votes (excluded by the rule, not bad rows)
TALLIES = (
    "responses_read",
    "responses_skipped",
    "images_annotated",
    "below_agreement",
    "tied",
    "images_kept",
)


class PerceptSentDataModule(VLMDataModule):
    def __init__(
        self,
        *,
        dataset_file: str,
        image_dir: str,
        image_file: str,
        responses_key: str,
        problem: str,
        problems: dict[str, dict[str, str]],
        alpha: int,
        num_folds: int,
        fold: int,
        val_fraction: float,
        split_seed: int,
        instruction: str,
        **common,
    ) -> None:
        super().__init__(**common)
        if self.modality.text and self.captions_csv is None:
            raise ValueError(
                f"PerceptSent has images only; modality={self.modality.name} needs a caption per image "
                "(data.captions_file, a CSV with id,text such as seed 003's) or use modality=image"
            )
        if problem not in problems:
            raise ValueError(f"data.problem={problem!r} is not one of data.problems: {sorted(problems)}")
        for name, mapping in problems.items():
            if sorted(mapping) != sorted(SENTIMENTS):
                raise ValueError(
                    f"data.problems.{name} must map exactly {list(SENTIMENTS)}, got {list(mapping)}"
                )
        if alpha < 1:
            raise ValueError(f"data.alpha must be at least 1, got {alpha}")
        self.dataset_file = Path(dataset_file)
        self.image_dir = Path(image_dir)
        self.image_file = image_file
        self.responses_key = responses_key
        self.problem = problem
        self.class_map = dict(problems[problem])
        self.alpha = alpha
        self.folds = {"num_folds": num_folds, "fold": fold, "val_fraction": val_fraction, "seed": split_seed}
        self.instruction = instruction
        self.annotation_skips: list[dict] = []
        self.tally: Counter = Counter()

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(self.class_map[s] for s in SENTIMENTS))

    def build_task(self):
        return MultiClassTask(self.labels, self.instruction)

    # --- votes -> images -> folds ----------------------------------------------------------------
    def _responses(self):
        """(source, image id, sentiment) for every valid response; bad ones raise or are recorded."""
        if not self.dataset_file.is_file():
            raise FileNotFoundError(f"PerceptSent annotations not found: {self.dataset_file}")
        data = json.loads(self.inputs.read_text(self.dataset_file).lstrip("\ufeff"))
        tasks = data.get("tasks") if isinstance(data, dict) else None
        if not isinstance(tasks, list):
            raise BadSampleError(f"{self.dataset_file}: no top-level 'tasks' list")
        for t, task in enumerate(tasks):
            responses = task.get(self.responses_key) if isinstance(task, dict) else None
            if not isinstance(responses, list):
                keys = sorted(task) if isinstance(task, dict) else type(task).__name__
                self._bad(f"{self.dataset_file}:tasks[{t}]", None, f"no {self.responses_key!r} list ({keys})")
                continue
            for r, response in enumerate(responses):
                source = f"{self.dataset_file}:tasks[{t}].{self.responses_key}[{r}]"
                self.tally["responses_read"] += 1
                image_id = response.get("id") if isinstance(response, dict) else None
                sentiment = response.get("sentiment") if isinstance(response, dict) else None
                if not isinstance(image_id, str) or not image_id:
                    self._bad(source, None, f"missing image id in {response!r}")
                elif sentiment not in SENTIMENTS:
                    self._bad(
                        source, image_id, f"unknown sentiment {sentiment!r}; allowed: {list(SENTIMENTS)}"
                    )
                else:
                    yield source, image_id, sentiment

    def _bad(self, source: str, image_id: str | None, message: str) -> None:
        if self.on_bad_sample == "error":
            raise BadSampleError(
                f"{source}: {message} (set data.on_bad_sample=skip to skip and count such rows)"
            )
        self.tally["responses_skipped"] += 1
        self.annotation_skips.append(skip_record(source, image_id, "annotation", message))

    @cached_property
    def images(self) -> dict[str, tuple[str, str]]:
        """Kept image id -> (source of its first vote, label), by the alpha rule on the mapped votes."""
        votes: dict[str, Counter] = {}
        first: dict[str, str] = {}
        for source, image_id, sentiment in self._responses():
            votes.setdefault(image_id, Counter())[self.class_map[sentiment]] += 1
            first.setdefault(image_id, source)
        kept = {}
        for image_id, counts in votes.items():
            (label, top), *rest = counts.most_common()
            if top < self.alpha:
                self.tally["below_agreement"] += 1
            elif rest and rest[0][1] == top:
                self.tally["tied"] += 1  # only possible when alpha is at most half the votes
            else:
                kept[image_id] = (first[image_id], label)
        self.tally["images_annotated"] = len(votes)
        self.tally["images_kept"] = len(kept)
        return kept

    @cached_property
    def split_of(self) -> dict[str, str]:
        labels = {image_id: label for image_id, (_, label) in self.images.items()}
        return cross_validation_splits(labels, **self.folds)

    # --- splits ------------------------------------------------------------------------------------
    def read_split(self, split: str) -> tuple[list[Sample], SplitReport]:
        rows = (
            (source, {"id": image_id, "label": label})
            for image_id, (source, label) in sorted(self.images.items())
            if self.split_of[image_id] == split
        )
        return self.inputs.collect(rows, self._sample, file=str(self.dataset_file))

    def _sample(self, row: dict, source: str) -> Sample:
        """An image and its label; the text (a caption of the image) is set from data.captions_file."""
        image_path = None
        if self.modality.image:
            image_path = self.inputs.image_file(self.image_dir, self.image_file.format(id=row["id"]))
        return Sample(id=row["id"], text=None, image_path=image_path, labels=(row["label"],), source=source)

    def record_settings(self) -> dict:
        rule = {"problem": self.problem, "class_map": self.class_map, "alpha": self.alpha}
        folds = {"num_folds": self.folds["num_folds"], "fold": self.folds["fold"]}
        folds |= {"val_fraction": self.folds["val_fraction"], "split_seed": self.folds["seed"]}
        return rule | folds | {key: self.tally[key] for key in TALLIES}

    def skipped(self) -> list[dict]:
        """Bad responses are dropped before the split, so they are listed under their own heading."""
        return [dict(item, split="annotations") for item in self.annotation_skips] + super().skipped()
