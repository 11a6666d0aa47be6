"""Per-class precision, recall, F1 and support from prediction records, scored exactly as the task's
metrics score them (so `f1` equals the run's `<split>/f1/<label>`)."""

from __future__ import annotations

from mmlearn.tasks.base import Parsed
from mmlearn.tasks.classification import ClassificationTask, MultiClassTask
from mmlearn.tasks.multiple_choice import LETTERS

UNPARSED = "(unparsed)"
COLUMNS = ["label", "support", "predicted", "tp", "fp", "fn", "tn", "precision", "recall", "f1"]
NO_CLASSES = {
    "captioning": "captioning has no classes: captions are free text, scored by BLEU-4, ROUGE-L and CIDEr-D",
}


def per_class_rows(labels: list[str], gold, pred) -> list[list]:
    """[label, support, predicted, tp, fp, fn, tn, precision, recall, f1] from multi-hot rows; a score with
    a zero denominator is 0, as in TaskMetrics (so f1 equals `test/f1/<label>`)."""
    rows = []
    for k, label in enumerate(labels):
        tp = sum(g[k] and p[k] for g, p in zip(gold, pred, strict=True))
        fp = sum(p[k] and not g[k] for g, p in zip(gold, pred, strict=True))
        fn = sum(g[k] and not p[k] for g, p in zip(gold, pred, strict=True))
        tn = len(gold) - tp - fp - fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        rows.append([label, tp + fn, tp + fp, tp, fp, fn, tn, precision, recall, f1])
    return rows


def multiclass_pairs(records: list[dict]) -> tuple[list[str], list[str]]:
    """(gold, predicted) label per record; an unparseable answer is its own predicted class."""
    gold = [r["gold"][0] for r in records]
    pred = [r["parsed"][0] if r["parse_ok"] and r["parsed"] else UNPARSED for r in records]
    return gold, pred


def is_correct(record: dict) -> bool:
    parsed, gold = record.get("parsed"), record.get("gold")
    if not record.get("parse_ok") or parsed is None:
        return False
    return set(parsed) == set(gold) if isinstance(parsed, list) and isinstance(gold, list) else parsed == gold


def class_view(task, records: list[dict]) -> ClassificationTask | None:
    """The classes a report is drawn over: the task's labels for classification; for multiple choice the
    option letters A, B, ... up to the last one any record names as gold or answer (how often each position
    is right and how often it is picked), scored as a multiclass task; None for tasks without classes."""
    if isinstance(task, ClassificationTask):
        return task
    if task.kind == "multiple_choice":
        named = {letter for r in records for letter in (r["gold"] or []) + (r["parsed"] or [])}
        if not named:
            return None
        return MultiClassTask(list(LETTERS[: max(LETTERS.index(x) for x in named) + 1]), "")
    return None


def no_classes_reason(task) -> str:
    return NO_CLASSES.get(task.kind, f"task kind {task.kind!r} has no classes to report on")


def multi_hot_rows(view: ClassificationTask, records: list[dict]) -> tuple[list[list[int]], list[list[int]]]:
    """Gold and predicted multi-hot rows as the task's metrics see them: a parse failure is scored by the
    task's rule (multi-label: wrong on every label; multiclass: no class predicted)."""
    parsed = [
        Parsed(tuple(r["parsed"]) if r["parse_ok"] and r["parsed"] is not None else None) for r in records
    ]
    gold = [view.to_multi_hot(r["gold"]).tolist() for r in records]
    pred = [view.prediction_row(p, tuple(r["gold"])).tolist() for p, r in zip(parsed, records, strict=True)]
    return gold, pred


def per_class_table(view: ClassificationTask, records: list[dict]) -> list[dict]:
    """One dict per class, keys COLUMNS."""
    gold, pred = multi_hot_rows(view, records)
    return [dict(zip(COLUMNS, row, strict=True)) for row in per_class_rows(view.labels, gold, pred)]
