"""Splits for datasets that ship without one: stratified k-fold cross-validation, seeded.

Test is fold `fold`; validation is a stratified share of the other folds. The assignment depends only
on the ids, their labels and the seed (never on file order), so a seed names the same split everywhere.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from mmlearn.data.sample import BadSampleError, SplitReport
from mmlearn.sample import Sample


def _shuffled_by_label(ids: list[str], labels: dict[str, str], rng: random.Random) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for item in sorted(ids):
        groups[labels[item]].append(item)
    for label in sorted(groups):
        rng.shuffle(groups[label])
    return {label: groups[label] for label in sorted(groups)}


def fold_of(labels: dict[str, str], *, num_folds: int, seed: int) -> dict[str, int]:
    """Each class is dealt round the folds in turn, continuing where the previous class stopped, so
    every fold gets its share of every class and the folds differ in size by at most one."""
    out: dict[str, int] = {}
    start = 0
    for members in _shuffled_by_label(list(labels), labels, random.Random(f"{seed}:folds")).values():
        for offset, item in enumerate(members):
            out[item] = (start + offset) % num_folds
        start += len(members)
    return out


def cross_validation_splits(
    labels: dict[str, str], *, num_folds: int, fold: int, val_fraction: float, seed: int
) -> dict[str, str]:
    """id -> train / val / test."""
    if num_folds < 2:
        raise ValueError(f"data.num_folds must be at least 2, got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"data.fold must be in [0, {num_folds - 1}], got {fold}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    if len(labels) < num_folds:
        raise ValueError(f"{len(labels)} samples cannot fill {num_folds} folds")
    folds = fold_of(labels, num_folds=num_folds, seed=seed)
    rest = [item for item in labels if folds[item] != fold]
    groups = _shuffled_by_label(rest, labels, random.Random(f"{seed}:val:{fold}"))
    # Every class spread evenly over [0, 1): any prefix of this order is stratified.
    key = {
        item: ((position + 0.5) / len(members), label)
        for label, members in groups.items()
        for position, item in enumerate(members)
    }
    order = sorted(key, key=key.__getitem__)
    num_val = round(val_fraction * len(rest))
    if num_val == 0:
        raise ValueError(f"data.val_fraction={val_fraction} leaves no validation sample out of {len(rest)}")
    val = set(order[:num_val])
    return {item: "test" if folds[item] == fold else "val" if item in val else "train" for item in labels}


@dataclass(frozen=True)
class FoldSettings:
    """`data.fold` (null: the files' own splits), `data.num_folds`, `data.val_fraction`, `data.split_seed`
    of a dataset that can be cross-validated (conf/data/folds/default.yaml)."""

    fold: int | None
    num_folds: int
    val_fraction: float
    seed: int

    @property
    def enabled(self) -> bool:
        return self.fold is not None

    def recorded(self) -> dict:
        """What data_summary.json records of the folds (nothing when they are off)."""
        return (
            {"fold": self.fold, "num_folds": self.num_folds, "split_seed": self.seed} if self.enabled else {}
        )


def refold(samples: list[Sample], report: SplitReport, folds: FoldSettings) -> dict[str, tuple]:
    """The labelled samples of one source re-split into train/val/test by `folds`, stratified by label
    set (a multi-label sample's stratum is its whole set). Rows the source skipped are listed under
    train, the split they were read for."""
    labels: dict[str, str] = {}
    for sample in samples:
        if sample.id in labels:
            raise BadSampleError(
                f"{sample.source}: id {sample.id!r} appears twice in {report.file}; folds assign samples by id"
            )
        labels[sample.id] = json.dumps(sorted(sample.labels))
    split_of = cross_validation_splits(
        labels, num_folds=folds.num_folds, fold=folds.fold, val_fraction=folds.val_fraction, seed=folds.seed
    )
    out = {}
    for split in ("train", "val", "test"):
        kept = [s for s in samples if split_of[s.id] == split]
        part = SplitReport(
            file=f"{report.file} (fold {folds.fold} of {folds.num_folds}: {split})",
            read=len(kept),
            label_counts=dict(sorted(Counter(label for s in kept for label in s.labels).items())),
        )
        if split == "train":
            part.read += report.merged + len(report.skipped)
            part.merged, part.skipped = report.merged, list(report.skipped)
        out[split] = (kept, part)
    return out
