"""Classification metrics as linear functions of per-sample weights, so B bootstrap resamples are one
matrix product: a resample is a vector of counts over the N samples. With all weights 1 they equal
`mmlearn.metrics.TaskMetrics` (and sklearn with labels=range(K), zero_division=0)."""

from __future__ import annotations

import numpy as np


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def weighted_metrics(
    weights: np.ndarray, pred: np.ndarray, gold: np.ndarray, ok: np.ndarray, kind: str, labels: list[str]
) -> dict[str, np.ndarray]:
    """weights: (B, N) sample counts; pred, gold: (N, K) multi-hot; ok: (N,) parsed. Returns (B,) arrays."""
    w = weights.astype(float)
    total = w.sum(axis=1)
    tp = w @ (pred * gold)
    fp = w @ (pred * (1 - gold))
    fn = w @ ((1 - pred) * gold)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    support = tp + fn
    out = {
        "f1_micro": _ratio(2 * tp.sum(1), (2 * tp + fp + fn).sum(1)),
        "f1_macro": f1.mean(axis=1),
        "f1_weighted": _ratio((f1 * support).sum(1), support.sum(1)),
        "precision_macro": _ratio(tp, tp + fp).mean(axis=1),
        "recall_macro": _ratio(tp, tp + fn).mean(axis=1),
        "parse_failure_rate": _ratio(w @ (~ok).astype(float), total),
    }
    exact = _ratio(w @ (pred == gold).all(axis=1).astype(float), total)
    if kind == "multilabel":
        out["subset_accuracy"] = exact
        out["hamming_loss"] = _ratio(w @ (pred != gold).mean(axis=1), total)
    else:
        out["accuracy"] = exact
    for k, label in enumerate(labels):
        out[f"f1/{label}"] = f1[:, k]
    return out


def bootstrap_weights(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) counts of each sample in each resample (with replacement)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(samples, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws])


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
