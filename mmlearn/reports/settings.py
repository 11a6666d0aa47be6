"""The report knobs, one home: conf/report/default.yaml (composed into train.yaml and evaluate.yaml)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportSettings:
    enabled: bool
    max_errors: int  # rows of errors.html
    thumbnail_px: int  # longest side of the embedded JPEG thumbnails
    max_tick_labels: int  # above this many classes confusion.png drops the class names

    def __post_init__(self) -> None:
        if self.max_errors < 0 or self.thumbnail_px < 1 or self.max_tick_labels < 0:
            raise ValueError(
                "report.max_errors and report.max_tick_labels must be >= 0 and report.thumbnail_px >= 1, "
                f"got {self.max_errors}, {self.max_tick_labels}, {self.thumbnail_px}"
            )
