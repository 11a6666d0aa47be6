"""Callbacks that write what a run produces next to its config."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback

from mmlearn.io import write_jsonl


class PredictionWriter(Callback):
    """Writes `<output_dir>/<stage>.jsonl`: id, raw output, parsed labels, gold labels, one line each."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self._rows: list[dict] = []

    def _collect(self, outputs) -> None:
        self._rows.extend(outputs or [])

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    def _write(self, trainer, stage: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        write_jsonl(self.output_dir / f"{stage}.jsonl", self._rows)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "test")
