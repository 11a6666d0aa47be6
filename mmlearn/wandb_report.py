"""W&B panels from the test predictions: per-class scores, confusion, sample predictions with their
images, and the trained adapter as an artifact. Does nothing unless a WandbLogger is attached."""

from __future__ import annotations

import tempfile

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from mmlearn.tasks.base import Parsed

UNPARSED = "(unparsed)"


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


class WandbReport(Callback):
    """Logs `test/per_class`, `test/confusion`, `test/samples` (the first `sample_rows` test samples) and,
    with `log_adapter`, the trained adapter (or full model) as a `model` artifact."""

    def __init__(self, sample_rows: int = 16, log_adapter: bool = False) -> None:
        self.sample_rows = sample_rows
        self.log_adapter = log_adapter
        self._records: list[dict] = []
        self._samples: list = []

    @staticmethod
    def _logger(trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._records, self._samples = [], []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._logger(trainer) is not None:
            self._records.extend(outputs or [])
            self._samples.extend(batch["samples"])

    def on_test_end(self, trainer, pl_module) -> None:
        logger = self._logger(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        import wandb

        run = logger.experiment
        task = pl_module.task
        panels = {"test/samples": self._sample_table(wandb)}
        if hasattr(task, "labels") and self._records:
            panels.update(self._classification_panels(wandb, task))
        run.log(panels)
        if self.log_adapter:
            self._log_model(wandb, run, trainer, pl_module)

    def _classification_panels(self, wandb, task) -> dict:
        parsed = [Parsed(None if r["parsed"] is None else tuple(r["parsed"])) for r in self._records]
        gold = [task.to_multi_hot(s.labels).tolist() for s in self._samples]
        pred = [task.prediction_row(p, s.labels).tolist() for p, s in zip(parsed, self._samples, strict=True)]
        columns = ["label", "support", "predicted", "tp", "fp", "fn", "tn", "precision", "recall", "f1"]
        panels = {
            "test/per_class": wandb.Table(columns=columns, data=per_class_rows(task.labels, gold, pred))
        }
        if task.kind == "multiclass":
            y_true, y_pred = multiclass_pairs(self._records)
            names = [*task.labels, UNPARSED]
            panels["test/confusion"] = wandb.plot.confusion_matrix(
                y_true=[names.index(g) for g in y_true],
                preds=[names.index(p) for p in y_pred],
                class_names=names,
                title="test confusion (gold x predicted)",
            )
        else:
            rows = [[r[0], r[3], r[4], r[5], r[6]] for r in per_class_rows(task.labels, gold, pred)]
            panels["test/confusion"] = wandb.Table(columns=["label", "tp", "fp", "fn", "tn"], data=rows)
        return panels

    def _sample_table(self, wandb):
        columns = ["id", "image", "text", "gold", "output", "parsed", "correct"]
        table = wandb.Table(columns=columns)
        for sample, record in list(zip(self._samples, self._records, strict=True))[: self.sample_rows]:
            image = wandb.Image(str(sample.image_path)) if sample.image_path else None
            parsed = record.get("parsed")
            parsed = ", ".join(parsed) if isinstance(parsed, list) else parsed
            gold = record.get("gold")
            gold = ", ".join(gold) if isinstance(gold, list) else gold
            row = [sample.id, image, sample.text, gold, record.get("output"), parsed, is_correct(record)]
            table.add_data(*row)
        return table

    def _log_model(self, wandb, run, trainer, pl_module) -> None:
        kind = "adapter" if pl_module.is_peft else "model"
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        artifact = wandb.Artifact(f"{kind}-{run.id}", type="model", metadata=metrics)
        with tempfile.TemporaryDirectory() as tmp:
            pl_module.save_trained(tmp)
            artifact.add_dir(tmp)
            run.log_artifact(artifact)
