"""The task metrics equal scikit-learn's on the same predictions."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_score, recall_score
from torchmetrics import MetricCollection
from torchmetrics.wrappers import ClasswiseWrapper

from mmlearn.metrics import TaskMetrics


def _run(labels, kind, preds, target, ok, batches=3):
    metrics = TaskMetrics(labels, kind)
    for chunk in np.array_split(np.arange(len(preds)), batches):
        metrics.update(torch.tensor(preds[chunk]), torch.tensor(target[chunk]), torch.tensor(ok[chunk]))
    return metrics.compute()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, (60, 5))
    preds = rng.integers(0, 2, (60, 5))
    target[:, 4] = 0  # a class with no support ...
    preds[:, 4] = 0  # ... and no predictions must not inflate macro F1
    ok = rng.random(60) > 0.2
    got = _run(list("abcde"), "multilabel", preds, target, ok)
    for average in ("micro", "macro", "weighted"):
        assert got[f"f1_{average}"] == pytest.approx(
            f1_score(target, preds, average=average, zero_division=0), abs=1e-6
        )
    assert got["hamming_loss"] == pytest.approx(hamming_loss(target, preds), abs=1e-6)
    assert got["subset_accuracy"] == pytest.approx(accuracy_score(target, preds), abs=1e-6)
    assert got["parse_failure_rate"] == pytest.approx(1 - ok.mean(), abs=1e-6)
    per_class = f1_score(target, preds, average=None, zero_division=0)
    assert [got[f"f1/{c}"] for c in "abcde"] == pytest.approx(per_class.tolist(), abs=1e-6)
    assert got["f1/e"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_equals_sklearn_with_failures(seed):
    rng = np.random.default_rng(seed)
    k = 4
    y_true = rng.integers(0, k, 50)
    y_pred = rng.integers(-1, k, 50)  # -1 = unparseable answer
    one_hot = lambda y: np.stack([np.eye(k, dtype=int)[v] if v >= 0 else np.zeros(k, int) for v in y])  # noqa: E731
    got = _run(list("wxyz"), "multiclass", one_hot(y_pred), one_hot(y_true), y_pred >= 0)
    labels = list(range(k))
    for average in ("micro", "macro", "weighted"):
        expected = f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0)
        assert got[f"f1_{average}"] == pytest.approx(expected, abs=1e-6)
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)
    for name, score in (("precision_macro", precision_score), ("recall_macro", recall_score)):
        expected = score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        assert got[name] == pytest.approx(expected, abs=1e-6)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    assert [got[f"f1/{c}"] for c in "wxyz"] == pytest.approx(per_class.tolist(), abs=1e-6)
    assert got["parse_failure_rate"] == pytest.approx(np.mean(y_pred < 0), abs=1e-6)


def test_multiclass_with_an_absent_class_equals_sklearn():
    """A class that is never gold nor predicted scores F1 0 and still counts in the macro mean."""
    y_true, y_pred = np.array([0, 1, 1, 0, 2]), np.array([0, 1, -1, 1, 2])
    one_hot = np.eye(4, dtype=int)
    preds = np.stack([one_hot[v] if v >= 0 else np.zeros(4, int) for v in y_pred])
    got = _run(list("wxyz"), "multiclass", preds, one_hot[y_true], y_pred >= 0, batches=2)
    expected = f1_score(y_true, y_pred, labels=[0, 1, 2, 3], average="macro", zero_division=0)
    assert got["f1_macro"] == pytest.approx(expected, abs=1e-6)
    assert got["f1/z"] == 0.0


def test_one_collection_with_per_class_f1_and_names_equal_to_the_computed_keys():
    metrics = TaskMetrics(["red", "a/b", "c d"], "multilabel")
    assert isinstance(metrics, MetricCollection)
    assert isinstance(metrics["f1"], ClasswiseWrapper)
    rows = torch.tensor([[1, 0, 1], [0, 1, 1]])
    metrics.update(rows, rows.flip(0), torch.tensor([True, False]))
    assert sorted(metrics.compute()) == sorted(metrics.names())
    assert {"f1/red", "f1/a/b", "f1/c d"} <= set(metrics.names())


def test_reset_starts_over():
    rng = np.random.default_rng(3)
    target, preds, ok = rng.integers(0, 2, (20, 3)), rng.integers(0, 2, (20, 3)), rng.random(20) > 0.5
    metrics = TaskMetrics(list("abc"), "multilabel")
    metrics.update(torch.tensor(1 - target), torch.tensor(target), torch.tensor(~ok))
    metrics.compute()
    metrics.reset()
    metrics.update(torch.tensor(preds), torch.tensor(target), torch.tensor(ok))
    assert metrics.compute() == pytest.approx(_run(list("abc"), "multilabel", preds, target, ok), abs=1e-6)
