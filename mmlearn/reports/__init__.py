"""Reports of one evaluated split, next to its metrics.json: per-class scores (per_class.csv/.json),
a confusion matrix (confusion.png), the worst errors with their images (errors.html) and an index of
what was written or skipped and why (reports.json)."""

from mmlearn.reports.callback import EvaluationReport
from mmlearn.reports.settings import ReportSettings
from mmlearn.reports.writer import write_reports

__all__ = ["EvaluationReport", "ReportSettings", "write_reports"]
