"""Cross-validation summaries: jobs that differ only by data.fold fold into one row per configuration,
with mean, sample std and the 95% t-interval equal to numpy/scipy on the per-fold values; and a real
3-fold sweep through train.py -m on the PerceptSent small copy."""

import csv
import json

import numpy as np
import pytest
import yaml
from scipy import stats

from mmlearn.cross_validation import Interval
from mmlearn.sweeps import FINISHED, summarize
from tests import layouts_more as layouts
from tests.test_sweeps import TINY, _job, _train

F1 = {  # (lr, fold) -> test metrics
    ("1e-4", 0): {"test/f1_weighted": 0.61, "test/f1/pos": 0.5},
    ("1e-4", 1): {"test/f1_weighted": 0.72, "test/f1/pos": 0.7},
    ("1e-4", 2): {"test/f1_weighted": 0.66, "test/f1/pos": 0.6},
    ("1e-3", 0): {"test/f1_weighted": 0.81, "test/f1/pos": 0.9},
    ("1e-3", 1): {"test/f1_weighted": 0.79, "test/f1/pos": 0.8},
}


def _reference(values):
    """numpy's mean and sample std, scipy's 95% Student-t interval."""
    values = np.asarray(values)
    mean, std = values.mean(), values.std(ddof=1)
    low, high = stats.t.interval(0.95, df=len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, std, low, high


@pytest.fixture
def folds(tmp_path):
    for n, ((lr, fold), metrics) in enumerate(F1.items()):
        _job(tmp_path, str(n), ["data=csv", f"optimizer.lr={lr}", f"data.fold={fold}"], metrics)
    _job(tmp_path, "5", ["data=csv", "optimizer.lr=1e-3", "data.fold=2"])  # killed: not in the means
    return tmp_path


def test_folds_fold_into_one_row_per_configuration(folds):
    summarize(folds)
    with (folds / "cv_summary.csv").open() as handle:
        rows = {r["optimizer.lr"]: r for r in csv.DictReader(handle)}
    assert list(rows) == ["1e-4", "1e-3"]
    assert rows["1e-4"]["folds"] == "3/3" and rows["1e-3"]["folds"] == "2/3"
    for lr, row in rows.items():
        for metric in ("test/f1_weighted", "test/f1/pos"):
            values = [m[metric] for (job_lr, _), m in F1.items() if job_lr == lr]
            got = [float(row[f"{metric}/{k}"]) for k in ("mean", "std", "ci95_low", "ci95_high")]
            assert got == pytest.approx(_reference(values), rel=1e-12, abs=1e-12)
    markdown = (folds / "summary.md").read_text()
    mean, std, low, high = _reference([0.61, 0.72, 0.66])
    assert "## Cross-validation (folds folded in)" in markdown
    assert f"| 1e-4 | 3/3 | {mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}] |" in markdown
    assert "test/f1/pos" not in markdown.split("## Cross-validation")[1]  # per-class: csv only


def test_a_single_fold_has_no_interval_and_sweeps_without_folds_get_no_cv_summary(tmp_path):
    assert Interval.of([0.5]).n == 1 and np.isnan(Interval.of([0.5]).std)
    _job(tmp_path, "0", ["optimizer.lr=1e-4"], {"test/f1_macro": 0.5})
    _job(tmp_path, "1", ["optimizer.lr=1e-3"], {"test/f1_macro": 0.6})
    summarize(tmp_path)
    assert not (tmp_path / "cv_summary.csv").exists()
    assert "Cross-validation" not in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_a_three_fold_sweep_is_summarised(tmp_path, tiny_qwen2vl):
    root = layouts.write_perceptsent(tmp_path / "perceptsent")
    out, sweep = _train(tmp_path / "runs", "-m", *TINY[:1], "data=perceptsent", "modality=image", f"data.root={root}",
                        "data.num_folds=3", "data.fold=0,1,2", "data.val_fraction=0.25",
                        "trainer.max_steps=2", "data.batch_size=4", "decoding=score")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = summarize(sweep)
    assert len(jobs) == 3 and all(j.status == FINISHED for j in jobs)
    folds = [yaml.safe_load((sweep / j.name / "config.yaml").read_text())["data"]["fold"] for j in jobs]
    assert folds == [0, 1, 2]
    (row,) = list(csv.DictReader((sweep / "cv_summary.csv").open()))
    assert row["folds"] == "3/3"
    metrics = [json.loads((sweep / j.name / "metrics.json").read_text()) for j in jobs]
    varying = [m for m in metrics[0] if m.startswith("test/") and len({f[m] for f in metrics}) > 1]
    assert varying  # scored answers always parse, so each fold's test rows give their own F1
    for metric in varying:
        got = [float(row[f"{metric}/{k}"]) for k in ("mean", "std", "ci95_low", "ci95_high")]
        assert got == pytest.approx(_reference([f[metric] for f in metrics]), rel=1e-9, abs=1e-12)
