"""The reports of a training run's test stage, written into the run directory next to metrics.json."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from mmlearn.callbacks import gather_once
from mmlearn.io import write_json
from mmlearn.reports.settings import ReportSettings
from mmlearn.reports.writer import INDEX, write_reports

log = logging.getLogger(__name__)


class EvaluationReport(Callback):
    """Collects the test predictions with their samples on every rank and writes the reports on rank 0.
    A failure here is logged and recorded in reports.json, not raised: the adapter is saved after testing,
    and a plotting problem must not cost the trained run."""

    def __init__(self, output_dir: str, settings: ReportSettings) -> None:
        self.output_dir = Path(output_dir)
        self.settings = settings
        self._rows: list[dict] = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.settings.enabled:
            for record, sample in zip(outputs or [], batch["samples"], strict=True):
                self._rows.append({"id": record["id"], "record": record, "sample": sample})

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if not self.settings.enabled:
            return
        rows = gather_once(self._rows, trainer.world_size)
        if not trainer.is_global_zero:
            return
        records, samples = [r["record"] for r in rows], [r["sample"] for r in rows]
        try:
            write_reports(self.output_dir, pl_module.task, records, samples, self.settings, "test")
        except Exception as error:
            log.exception("the evaluation reports could not be written to %s", self.output_dir)
            write_json(
                self.output_dir / INDEX, {"split": "test", "error": f"{type(error).__name__}: {error}"}
            )
