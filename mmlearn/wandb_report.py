"""W&B panels from the test predictions: per-class scores, confusion, sample predictions with their
images, the report files (confusion.png, errors.html) and the trained adapter as an artifact. Does
nothing unless a WandbLogger is attached."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from mmlearn.reports.per_class import (
    COLUMNS,
    UNPARSED,
    is_correct,
    multi_hot_rows,
    multiclass_pairs,
    per_class_rows,
)

__all__ = ["UNPARSED", "WandbReport", "is_correct", "multiclass_pairs", "per_class_rows"]


class WandbReport(Callback):
    """Logs `test/per_class`, `test/confusion`, `test/samples` (the first `sample_rows` test samples),
    `test/confusion_png` and `test/errors` (confusion.png and errors.html from `report_dir`, where the
    EvaluationReport callback writes them, when they are there) and, with `log_adapter`, the trained
    adapter (or full model) as a `model` artifact."""

    def __init__(self, sample_rows: int, log_adapter: bool, report_dir: str | None) -> None:
        self.sample_rows = sample_rows
        self.log_adapter = log_adapter
        self.report_dir = Path(report_dir) if report_dir else None
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
        panels.update(self._report_files(wandb))
        run.log(panels)
        if self.log_adapter:
            self._log_model(wandb, run, trainer, pl_module)

    def _classification_panels(self, wandb, task) -> dict:
        gold, pred = multi_hot_rows(task, self._records)
        panels = {
            "test/per_class": wandb.Table(columns=COLUMNS, data=per_class_rows(task.labels, gold, pred))
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

    def _report_files(self, wandb) -> dict:
        """The EvaluationReport's picture and page (written at the end of the test epoch, before this)."""
        if self.report_dir is None:
            return {}
        panels = {}
        png, html = self.report_dir / "confusion.png", self.report_dir / "errors.html"
        if png.is_file():
            panels["test/confusion_png"] = wandb.Image(str(png))
        if html.is_file():
            panels["test/errors"] = wandb.Html(html.read_text(encoding="utf-8"))
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
