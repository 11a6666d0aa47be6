"""Splits for datasets that ship without one: stratified k-fold cross-validation, seeded.

Test is fold `fold`; validation is a stratified share of the other folds. The assignment depends only
on the ids, their labels and the seed (never on file order), so a seed names the same split everywhere.
"""

from __future__ import annotations

import random
from collections import defaultdict


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
