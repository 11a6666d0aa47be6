"""The record of examples that could not be used (the example itself is `mmlearn.sample.Sample`)."""

from __future__ import annotations

from dataclasses import dataclass, field


class BadSampleError(ValueError):
    """A row that cannot be used; the message names file and row."""


@dataclass
class SplitReport:
    """Per-split accounting for data_summary.json: nothing read is ever unaccounted for."""

    file: str
    read: int = 0
    merged: int = 0  # rows folded into another sample by the dataset's rules (not errors)
    skipped: list[dict] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return self.read - self.merged - len(self.skipped)

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for item in self.skipped:
            reasons[item["reason_kind"]] = reasons.get(item["reason_kind"], 0) + 1
        return {
            "file": self.file,
            "samples_read": self.read,
            "samples_kept": self.kept,
            "rows_merged": self.merged,
            "samples_skipped": len(self.skipped),
            "skipped_by_reason": reasons,
            "label_counts": dict(self.label_counts),
        }


def skip_record(source: str, sample_id: str | None, kind: str, message: str) -> dict:
    return {"source": source, "id": sample_id, "reason_kind": kind, "reason": message}


__all__ = ["BadSampleError", "SplitReport", "skip_record"]
