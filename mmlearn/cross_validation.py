"""Cross-validation across the jobs of a sweep: `train.py -m experiment=<x> data.fold=0,1,2,3,4` runs one
job per fold; jobs that differ only by `data.fold` are one configuration, summarised per test metric as
the mean, the sample standard deviation and the 95% Student-t interval over its folds (seed 003 reports
its weighted F1 this way), written to `cv_summary.csv` and a section of `summary.md`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

FOLD_KEY = "data.fold"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for a single fold
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Interval:
        n = len(values)
        mean = math.fsum(values) / n
        if n < 2:
            return cls(n, mean, math.nan, math.nan, math.nan)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1)) * std / math.sqrt(n)
        return cls(n, mean, std, mean - half, mean + half)


def configurations(jobs, swept: list[str]) -> dict[tuple[str, ...], list]:
    """Finished jobs grouped by their swept values other than the fold, in first-seen order."""
    others = [k for k in swept if k != FOLD_KEY]
    groups: dict[tuple[str, ...], list] = {}
    for job in jobs:
        groups.setdefault(tuple(job.overrides.get(k, "") for k in others), []).append(job)
    return groups


def fold_table(jobs, swept: list[str], metrics: list[str]) -> tuple[list[str], list[list]]:
    """One row per configuration: its swept values, folds finished / run, then per test metric
    mean, std, and the interval's bounds."""
    others = [k for k in swept if k != FOLD_KEY]
    header = [*others, "folds"]
    for metric in metrics:
        header += [f"{metric}/mean", f"{metric}/std", f"{metric}/ci95_low", f"{metric}/ci95_high"]
    rows = []
    for values, group in configurations(jobs, swept).items():
        finished = [job for job in group if job.status == "finished"]
        row = [*values, f"{len(finished)}/{len(group)}"]
        for metric in metrics:
            measured = [job.metrics[metric] for job in finished if metric in job.metrics]
            if measured:
                i = Interval.of(measured)
                row += [i.mean, i.std, i.low, i.high]
            else:
                row += ["", "", "", ""]
        rows.append(row)
    return header, rows


def _pm(row: list, header: list[str], metric: str) -> str:
    mean = row[header.index(f"{metric}/mean")]
    if mean == "":
        return "n/a"
    std, low, high = (row[header.index(f"{metric}/{k}")] for k in ("std", "ci95_low", "ci95_high"))
    if math.isnan(std):
        return f"{mean:.4f} (one fold)"
    return f"{mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}]"


def fold_markdown(header: list[str], rows: list[list], metrics: list[str]) -> str:
    """The summary.md section: mean ± std [95% t-interval] of the headline test metrics (no per-class
    columns; those are in cv_summary.csv)."""
    shown = [m for m in metrics if m.count("/") < 2]
    keys = header[: header.index("folds") + 1]
    lines = [
        "## Cross-validation (folds folded in)",
        "",
        f"mean ± std [{CONFIDENCE:.0%} t-interval] over each configuration's finished folds",
        "",
        "| " + " | ".join([*keys, *shown]) + " |",
        "|" + "---|" * (len(keys) + len(shown)),
    ]
    for row in rows:
        cells = [str(v) for v in row[: len(keys)]] + [_pm(row, header, m) for m in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
