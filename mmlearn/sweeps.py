"""A Hydra multirun directory as one table: the overrides that differ between jobs, each job's status
(finished / failed / running-or-killed) with its error, its final metrics, and a heatmap of one metric
over two swept parameters. `python sweep/summarize.py <multirun dir>`."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback

from mmlearn.cross_validation import FOLD_KEY, fold_markdown, fold_table
from mmlearn.io import write_atomic

FINISHED, FAILED, UNFINISHED = "finished", "failed", "running-or-killed"


class ControllerConfig(Callback):
    """Hydra callback: gives the multirun controller the `${hydra:...}` resolver. Hydra 1.3 sets
    HydraConfig only when a job starts, so the sweeper's and launcher's own `hydra.sweep.dir`, which
    goes through `paths.log_dir` to `${hydra:runtime.cwd}`, fails with "HydraConfig was not set".
    Installs the composed controller config as Hydra's run mode does (and its multirun will: hydra PR
    #3439, not in 1.3.8); every job still installs its own, and the previous one is back at the end."""

    def on_multirun_start(self, config, **kwargs) -> None:
        self.previous = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(config)

    def on_multirun_end(self, config, **kwargs) -> None:
        HydraConfig.instance().cfg = self.previous


class SweepGroup(Callback):
    """Hydra callback: names the multirun, `<job name>-<multirun dir name>`, in MMLEARN_SWEEP_GROUP for
    its jobs (conf/logger/wandb.yaml makes it their W&B group; submitted SLURM jobs inherit it)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        os.environ["MMLEARN_SWEEP_GROUP"] = f"{config.hydra.job.name}-{Path(config.hydra.sweep.dir).name}"


@dataclass
class Job:
    name: str  # the job's directory relative to the multirun directory
    overrides: dict[str, str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    optimized_metric: str | None = None
    monitor: str | None = None


def _natural_key(text: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_job(root: Path, job_dir: Path) -> Job:
    overrides = dict(item.split("=", 1) for item in _read_yaml(job_dir / ".hydra" / "overrides.yaml") or [])
    config = _read_yaml(job_dir / "config.yaml") or {}
    job = Job(
        name=str(job_dir.relative_to(root)),
        overrides=overrides,
        status=UNFINISHED,
        optimized_metric=config.get("optimized_metric"),
        monitor=(config.get("data") or {}).get("monitor"),
    )
    if (job_dir / "metrics.json").is_file():
        job.status = FINISHED
        job.metrics = json.loads((job_dir / "metrics.json").read_text())
    elif (job_dir / "error.txt").is_file():
        job.status = FAILED
        job.error = (job_dir / "error.txt").read_text().splitlines()[0]
    return job


def find_jobs(root: str | Path) -> list[Job]:
    """Every job directory (one holding `.hydra/overrides.yaml`) below `root`, in job-number order;
    directories inside a job (evaluate.py's `eval/<split>-<time>/`) belong to that job."""
    root = Path(root)
    found = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")} - {root}
    dirs = sorted(
        (d for d in found if not any(parent in found for parent in d.parents)),
        key=lambda p: _natural_key(str(p.relative_to(root))),
    )
    if not dirs:
        raise FileNotFoundError(f"{root}: no job directories (with .hydra/overrides.yaml) below it")
    return [read_job(root, d) for d in dirs]


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (or that only some jobs set), in first-seen order."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def common_overrides(jobs: list[Job]) -> dict[str, str]:
    swept = set(swept_keys(jobs))
    return {k: v for k, v in jobs[0].overrides.items() if k not in swept}


def metric_columns(jobs: list[Job]) -> list[str]:
    """The best validation score(s) (`*_best`) first, then every test/* metric."""
    names = {name for job in jobs for name in job.metrics}
    best = sorted(n for n in names if n.endswith("_best"))
    return best + sorted(n for n in names if n.startswith("test/"))


def table(jobs: list[Job]) -> tuple[list[str], list[list]]:
    keys, metrics = swept_keys(jobs), metric_columns(jobs)
    header = ["job", *keys, "status", *metrics, "error"]
    rows = [
        [job.name, *(job.overrides.get(k, "") for k in keys), job.status]
        + [job.metrics.get(m, "") for m in metrics]
        + [job.error]
        for job in jobs
    ]
    return header, rows


def to_csv(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _cell(value) -> str:
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def to_markdown(jobs: list[Job], header: list[str], rows: list[list]) -> str:
    """The table without per-class columns (test/f1/<label>: those stay in summary.csv), then the
    failed and unfinished runs with their errors."""
    keep = [i for i, name in enumerate(header) if name.count("/") < 2 and name != "error"]
    lines = [f"# Sweep summary: {len(jobs)} runs", ""]
    counts = {s: sum(job.status == s for job in jobs) for s in (FINISHED, FAILED, UNFINISHED)}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    common = common_overrides(jobs)
    if common:
        lines += ["", "Common overrides: " + " ".join(f"`{k}={v}`" for k, v in common.items())]
    lines += ["", "| " + " | ".join(header[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    lines += ["| " + " | ".join(_cell(row[i]) for i in keep) + " |" for row in rows]
    broken = [job for job in jobs if job.status != FINISHED]
    if broken:
        lines += ["", "## Runs that did not finish", ""]
        for job in broken:
            why = (
                f"{job.error} (see {job.name}/error.txt)" if job.error else "no metrics.json and no error.txt"
            )
            lines.append(f"- {job.name} ({job.status}): {why}")
    return "\n".join(lines) + "\n"


def default_metric(jobs: list[Job]) -> str:
    """The optimised metric's best value, or test/<data.monitor> when no run recorded it."""
    for job in jobs:
        if job.optimized_metric and any(f"{job.optimized_metric}_best" in j.metrics for j in jobs):
            return f"{job.optimized_metric}_best"
    monitor = next((job.monitor for job in jobs if job.monitor), None)
    if monitor is None:
        raise ValueError("no run records optimized_metric or data.monitor in its config.yaml; pass --metric")
    return f"test/{monitor}"


def _ordered(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values, key=_natural_key)


def heatmap(jobs: list[Job], metric: str, x: str, y: str, path: Path) -> Path:
    """`metric` over (x, y); several runs in one cell (other swept keys) show their best. A cell whose runs
    all failed is marked `failed`, one with no finished run `killed`/`n/a`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = _ordered({job.overrides.get(x, "") for job in jobs})
    ys = _ordered({job.overrides.get(y, "") for job in jobs})
    values = np.full((len(ys), len(xs)), np.nan)
    marks: dict[tuple[int, int], str] = {}
    for job in jobs:
        i, j = ys.index(job.overrides.get(y, "")), xs.index(job.overrides.get(x, ""))
        value = job.metrics.get(metric)
        if value is not None and not math.isnan(value):
            values[i, j] = value if math.isnan(values[i, j]) else max(values[i, j], value)
        else:
            marks.setdefault((i, j), {FAILED: "failed", UNFINISHED: "killed"}.get(job.status, "n/a"))
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    ax.set_facecolor("#dddddd")
    for i in range(len(ys)):
        for j in range(len(xs)):
            text = marks.get((i, j), "n/a") if math.isnan(values[i, j]) else f"{values[i, j]:.3f}"
            bright = not math.isnan(values[i, j]) and image.norm(values[i, j]) > 0.5
            color = (
                "red" if text == "failed" else ("black" if bright or math.isnan(values[i, j]) else "white")
            )
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    others = len({tuple(sorted(job.overrides.items())) for job in jobs}) > len(xs) * len(ys)
    ax.set_title(metric + (" (best over the other swept keys)" if others else ""))
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summarize(root: str | Path, metric: str | None = None, x: str | None = None, y: str | None = None):
    """Writes summary.csv, summary.md and (with two swept keys) heatmap.png into `root`; returns the jobs.
    A sweep over `data.fold` also gets cv_summary.csv and a cross-validation section in summary.md."""
    root = Path(root)
    jobs = find_jobs(root)
    header, rows = table(jobs)
    write_atomic(root / "summary.csv", to_csv(header, rows))
    markdown = to_markdown(jobs, header, rows)
    keys = swept_keys(jobs)
    if FOLD_KEY in keys:
        tests = [m for m in metric_columns(jobs) if m.startswith("test/")]
        cv_header, cv_rows = fold_table(jobs, keys, tests)
        write_atomic(root / "cv_summary.csv", to_csv(cv_header, cv_rows))
        markdown += "\n" + fold_markdown(cv_header, cv_rows, tests)
    write_atomic(root / "summary.md", markdown)
    keys = [k for k in keys if k != FOLD_KEY]  # folds are averaged in cv_summary, not a heatmap axis
    x = x or (keys[0] if keys else None)
    y = y or next((k for k in keys if k != x), None)
    if x is not None and y is not None:
        heatmap(jobs, metric or default_metric(jobs), x, y, root / "heatmap.png")
    return jobs
