"""callbacks.early_stopping: off by default (no callback), Lightning's EarlyStopping on the monitored val
metric with a patience, and a run that stops once its metric stops improving."""

import csv

import pytest
from lightning.pytorch.callbacks import EarlyStopping

from mmlearn.building import build_callbacks
from tests.conftest import compose, run_script


def _callbacks(*overrides):
    return build_callbacks(compose(["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/out", *overrides]))


def test_off_by_default_and_on_with_a_patience():
    assert not any(isinstance(c, EarlyStopping) for c in _callbacks())
    (stopper,) = [
        c for c in _callbacks("callbacks.early_stopping.patience=3") if isinstance(c, EarlyStopping)
    ]
    assert stopper.patience == 3 and stopper.monitor == "val/f1_macro" and stopper.mode == "max"
    with pytest.raises(Exception, match=r"patience must be null \(off\) or >= 1, got 0"):
        _callbacks("callbacks.early_stopping.patience=0")


@pytest.mark.slow
def test_a_run_stops_when_its_metric_stops_improving(tmp_path, tiny_qwen2vl, demo_dir):
    """lr=0: val/f1_macro never changes, so with patience 1 the second validation stops the run (of 6
    epochs allowed)."""
    run = tmp_path / "run"
    run_script(
        "train.py",
        "logger=csv",
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        "data.batch_size=8",
        "trainer.max_epochs=6",
        "trainer.max_steps=-1",
        "optimizer.lr=0",
        "callbacks.early_stopping.patience=1",
        f"hydra.run.dir={run}",
    )
    (metrics,) = run.rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    validations = {r["epoch"] for r in rows if r.get("val/f1_macro")}
    assert validations == {"0", "1"}
