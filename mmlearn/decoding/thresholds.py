"""Per-label decision thresholds for multi-label score decoding, fitted on val to maximise each
label's F1. The default threshold is always a candidate, so val F1 never drops below it."""

from __future__ import annotations

import numpy as np


def f1_at(scores: np.ndarray, gold: np.ndarray, threshold: float) -> float:
    pred = scores >= threshold
    tp = float(np.sum(pred & gold))
    denom = float(np.sum(pred) + np.sum(gold))
    return 0.0 if denom == 0 else 2 * tp / denom


def tune_thresholds(scores: np.ndarray, gold: np.ndarray, default: float) -> np.ndarray:
    """scores, gold: (samples, labels). Candidates are the midpoints between sorted distinct scores
    (and the default); ties go to the threshold nearest the default."""
    gold = gold.astype(bool)
    out = np.empty(scores.shape[1])
    for k in range(scores.shape[1]):
        values = np.unique(scores[:, k])
        candidates = np.concatenate([[default], (values[1:] + values[:-1]) / 2, values])
        best = max(candidates, key=lambda t: (f1_at(scores[:, k], gold[:, k], t), -abs(t - default)))
        out[k] = float(best)
    return out


def thresholds_from_rows(rows: list[dict], labels: list[str], default: float) -> dict[str, float]:
    """Fit from prediction records that carry per-label `scores` (decoding=score)."""
    if not rows or any("scores" not in row for row in rows):
        raise ValueError("threshold tuning needs per-label scores: use decoding=score")
    scores = np.array([[row["scores"][label] for label in labels] for row in rows])
    gold = np.array([[label in row["gold"] for label in labels] for row in rows])
    return dict(zip(labels, tune_thresholds(scores, gold, default).tolist(), strict=True))
