"""Every report of one evaluated split, written next to its metrics.json, and reports.json: the index
saying what was written and, for what was not (captioning has no classes), why."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mmlearn.io import write_atomic, write_json
from mmlearn.reports.confusion import confusion_data, plot_confusion
from mmlearn.reports.errors_html import render_errors_html
from mmlearn.reports.per_class import COLUMNS, class_view, no_classes_reason, per_class_table
from mmlearn.reports.settings import ReportSettings
from mmlearn.reports.worst_errors import worst_errors

INDEX = "reports.json"


def write_per_class(out: Path, rows: list[dict]) -> list[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "per_class.csv", buffer.getvalue())
    write_json(out / "per_class.json", rows)
    return ["per_class.csv", "per_class.json"]


def write_reports(
    out: str | Path, task, records: list[dict], samples, settings: ReportSettings, split: str
) -> dict:
    """`records`: the lines of predictions/<split>.jsonl; `samples`: the split's samples (for images and
    input text, matched by id). Returns the index also written to reports.json."""
    out = Path(out)
    index: dict = {"split": split, "task_kind": task.kind, "samples": len(records)}
    view = class_view(task, records)
    if view is None:
        reason = (
            "no prediction names an option letter"
            if task.kind == "multiple_choice"
            else no_classes_reason(task)
        )
        index["per_class"] = index["confusion"] = {"skipped": reason}
    else:
        classes = "option letters" if view is not task else "labels"
        index["per_class"] = {
            "files": write_per_class(out, per_class_table(view, records)),
            "classes": classes,
        }
        confusion = confusion_data(view, records)
        title = f"{split}: gold x predicted, {len(records)} samples"
        plot_confusion(confusion, out / "confusion.png", title, settings.max_tick_labels)
        index["confusion"] = {"files": ["confusion.png"], "layout": confusion.layout}
    errors = worst_errors(task.kind, records, settings.max_errors)
    title = f"{split}: worst {'captions' if task.kind == 'captioning' else 'errors'}"
    html = render_errors_html(errors, {s.id: s for s in samples}, title, settings.thumbnail_px)
    write_atomic(out / "errors.html", html)
    index["errors"] = {
        "files": ["errors.html"],
        "shown": len(errors.errors),
        "candidates": errors.candidates,
        "order": errors.order,
    }
    write_json(out / INDEX, index)
    return index
