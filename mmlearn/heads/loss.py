"""The head's loss: cross-entropy over the labels (multiclass) or one binary cross-entropy per label
(multi-label), optionally weighted per class from the training split's counts.

`inverse`: w_k = 1 / count_k (seed 003's 1/count). `balanced`: w_k = n / (K * count_k) (scikit-learn's
`compute_class_weight("balanced")`), where count_k is the number of training samples carrying label k
and n the number of training samples. Multiclass: PyTorch's weighted mean,
sum_i w_{y_i} * nll_i / sum_i w_{y_i}. Multi-label: the mean over samples and labels of w_k * bce_ik."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLASS_WEIGHTS = (None, "inverse", "balanced")


def class_counts(task, samples) -> torch.Tensor:
    """Training samples per label (a multi-label sample counts once for each of its labels)."""
    return torch.stack([task.to_multi_hot(s.labels) for s in samples]).sum(dim=0)


def class_weights(kind: str | None, counts: torch.Tensor, labels: list[str], n_samples: int):
    if kind not in CLASS_WEIGHTS:
        raise ValueError(f"head.loss.class_weights must be one of {CLASS_WEIGHTS}, got {kind!r}")
    if kind is None:
        return None
    empty = [label for label, n in zip(labels, counts.tolist(), strict=True) if n == 0]
    if empty:
        raise ValueError(
            f"head.loss.class_weights={kind}: labels {empty} have no training sample (a weight 1/0); "
            "set head.loss.class_weights=null or add samples"
        )
    counts = counts.double()
    weights = 1.0 / counts if kind == "inverse" else n_samples / (len(labels) * counts)
    return weights.float()


def targets(task, samples) -> torch.Tensor:
    """Class indices (multiclass) or a multi-hot float matrix (multi-label)."""
    hot = torch.stack([task.to_multi_hot(s.labels) for s in samples])
    return hot.argmax(dim=1) if task.kind == "multiclass" else hot.float()


def head_loss(logits: torch.Tensor, target: torch.Tensor, kind: str, weights: torch.Tensor | None):
    logits = logits.float()
    if weights is not None:
        weights = weights.to(logits.device)
    if kind == "multiclass":
        return F.cross_entropy(logits, target.to(logits.device), weight=weights)
    per_entry = F.binary_cross_entropy_with_logits(logits, target.to(logits.device), reduction="none")
    if weights is not None:
        per_entry = per_entry * weights
    return per_entry.mean()
