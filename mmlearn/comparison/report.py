"""The comparison report: report.csv, report.md, report.json and report.png from evaluation dirs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from mmlearn.comparison.metrics import bootstrap_weights, interval, weighted_metrics
from mmlearn.io import write_atomic, write_json
from mmlearn.tasks import MultiClassTask, MultiLabelTask, Parsed

TASKS = {"multilabel": MultiLabelTask, "multiclass": MultiClassTask}
SAME_ACROSS_MODES = ("split", "data", "task_kind", "labels")


def load_mode(directory: Path) -> tuple[dict, list[dict]]:
    info_path = directory / "evaluation.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: pass directories written by evaluate.py")
    info = json.loads(info_path.read_text())
    rows_path = directory / "predictions" / f"{info['split']}.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    return info, rows


def multi_hot(info: dict, rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction rows as the metrics see them (a parse failure scored by the task's rule)."""
    if info["task_kind"] not in TASKS:
        raise ValueError(f"comparison reports cover classification tasks, not {info['task_kind']!r}")
    task = TASKS[info["task_kind"]](info["labels"], "")
    parsed = [Parsed(None if not r["parse_ok"] else tuple(r["parsed"])) for r in rows]
    pred = np.stack(
        [task.prediction_row(p, tuple(r["gold"])).numpy() for p, r in zip(parsed, rows, strict=True)]
    )
    gold = np.stack([task.to_multi_hot(r["gold"]).numpy() for r in rows])
    ok = np.array([r["parse_ok"] for r in rows])
    return pred, gold, ok


def _check_comparable(modes: dict[str, tuple[dict, list[dict]]]) -> list[str]:
    (first, (ref_info, ref_rows)), *others = modes.items()
    ids = [r["id"] for r in ref_rows]
    for name, (info, rows) in others:
        for key in SAME_ACROSS_MODES:
            if info[key] != ref_info[key]:
                raise ValueError(
                    f"modes {first!r} and {name!r} differ in {key}: {ref_info[key]} vs {info[key]}"
                )
        if sorted(r["id"] for r in rows) != sorted(ids):
            raise ValueError(f"modes {first!r} and {name!r} were evaluated on different samples")
    return ids


def compare_modes(
    modes: dict[str, tuple[dict, list[dict]]], reference: str, samples: int, seed: int
) -> list[dict]:
    """One row per (mode, metric): point estimate, bootstrap 95% interval, and the paired difference
    against the reference mode (same resampled samples for both)."""
    if reference not in modes:
        raise ValueError(f"reference mode {reference!r} is not one of {list(modes)}")
    ids = _check_comparable(modes)
    weights = bootstrap_weights(len(ids), samples, seed)
    ones = np.ones((1, len(ids)))
    computed = {}
    for name, (info, rows) in modes.items():
        by_id = {r["id"]: r for r in rows}
        arrays = multi_hot(info, [by_id[i] for i in ids])  # every mode in the reference's sample order
        point = weighted_metrics(ones, *arrays, info["task_kind"], info["labels"])
        boot = weighted_metrics(weights, *arrays, info["task_kind"], info["labels"])
        computed[name] = (point, boot)
    ref_point, ref_boot = computed[reference]
    table = []
    for name, (point, boot) in computed.items():
        for metric in point:
            low, high = interval(boot[metric])
            diff_low, diff_high = interval(boot[metric] - ref_boot[metric])
            table.append(
                {
                    "mode": name,
                    "metric": metric,
                    "value": float(point[metric][0]),
                    "ci_low": low,
                    "ci_high": high,
                    "diff_vs_reference": float(point[metric][0] - ref_point[metric][0]),
                    "diff_ci_low": diff_low,
                    "diff_ci_high": diff_high,
                    "samples": len(ids),
                }
            )
    return table


def _markdown(table: list[dict], infos: dict[str, dict], reference: str, samples: int) -> str:
    modes = list(infos)
    metrics = list(dict.fromkeys(row["metric"] for row in table))
    cell = {(r["mode"], r["metric"]): r for r in table}
    first = infos[modes[0]]
    lines = [
        f"# {first['data']} / {first['split']}: {len(modes)} modes, {table[0]['samples']} samples",
        "",
        f"95% intervals: bootstrap over samples ({samples} resamples); differences are paired against "
        f"`{reference}` (same resamples).",
        "",
        "| mode | model | decoding | shots | prompt_id | samples/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, info in infos.items():
        shots = info["shots"]["shots"] or (
            f"{info['shots']['shots_per_class']}/class" if info["shots"]["shots_per_class"] else 0
        )
        speed = info["samples"] / info["seconds"] if info["seconds"] else float("nan")
        lines.append(
            f"| {name} | {info['model']} | {info['decoding']} | {shots} | "
            f"{', '.join(info['prompt_ids'])} | {speed:.2f} |"
        )
    lines += ["", "| metric | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for metric in metrics:
        cells = []
        for name in modes:
            r = cell[(name, metric)]
            text = f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            if name != reference:
                text += (
                    f"<br>Δ {r['diff_vs_reference']:+.3f} [{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}]"
                )
            cells.append(text)
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r["mode"] for r in table))
    metrics = [m for m in dict.fromkeys(r["metric"] for r in table) if "/" not in m]  # per-class left out
    cell = {(r["mode"], r["metric"]): r for r in table}
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics)), 4))
    for i, mode in enumerate(modes):
        rows = [cell[(mode, m)] for m in metrics]
        values = np.array([r["value"] for r in rows])
        errors = np.array(
            [[r["value"] - r["ci_low"] for r in rows], [r["ci_high"] - r["value"] for r in rows]]
        )
        x = np.arange(len(metrics)) + (i - (len(modes) - 1) / 2) * width
        ax.bar(x, values, width, yerr=np.clip(errors, 0, None), capsize=3, label=mode)
    ax.set_xticks(np.arange(len(metrics)), metrics, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("value (95% bootstrap interval)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    directories: dict[str, Path], reference: str, out: Path, samples: int, seed: int
) -> list[dict]:
    """Read each mode's evaluation dir and write report.{csv,md,json,png} under `out`."""
    modes = {name: load_mode(Path(d)) for name, d in directories.items()}
    table = compare_modes(modes, reference, samples, seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "report.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    infos = {name: info for name, (info, _) in modes.items()}
    write_atomic(out / "report.md", _markdown(table, infos, reference, samples))
    write_json(
        out / "report.json",
        {
            "reference": reference,
            "bootstrap": {"samples": samples, "seed": seed},
            "modes": infos,
            "rows": table,
        },
    )
    _plot(table, out / "report.png")
    return table
