"""Sweeps: the summary of a multirun directory (finished, failed and killed jobs), real grid and Optuna
multiruns through train.py, and the SLURM launcher config composing offline."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mmlearn.sweeps import FAILED, FINISHED, UNFINISHED, find_jobs, summarize
from tests.conftest import REPO

TINY = ["logger=csv", "data.prepare.splits={train: 16, val: 8, test: 8}"]


def _job(root, name, overrides, metrics=None, error=None, optimized="val/f1_macro"):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "config.yaml").write_text(
        yaml.safe_dump({"optimized_metric": optimized, "data": {"monitor": "f1"}})
    )
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (job / "error.txt").write_text(error)
    return job


@pytest.fixture
def multirun(tmp_path):
    common = ["logger=csv", "data=demo"]
    _job(tmp_path, "0", [*common, "peft.adapter.r=4", "optimizer.lr=1e-4"],
         {"val/f1_macro_best": 0.5, "test/f1_macro": 0.25, "test/f1/red": 1.0})  # fmt: skip
    _job(tmp_path, "1", [*common, "peft.adapter.r=4", "optimizer.lr=1e-3"],
         {"val/f1_macro_best": 0.75, "test/f1_macro": 0.5, "test/f1/red": 0.0})  # fmt: skip
    _job(tmp_path, "2", [*common, "peft.adapter.r=8", "optimizer.lr=1e-4"],
         error="torch.OutOfMemoryError: CUDA out of memory\n\nTraceback (most recent call last):\n...")  # fmt: skip
    _job(tmp_path, "10", [*common, "peft.adapter.r=8", "optimizer.lr=1e-3"])  # killed: no metrics, no error
    _job(
        tmp_path / "0" / "eval", "test-2026", ["run_dir=x"], {"test/f1_macro": 0.25}
    )  # evaluate.py's, not a job
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    return tmp_path


def test_summary_lists_every_job_with_its_status_deltas_and_metrics(multirun):
    jobs = summarize(multirun)
    assert [(j.name, j.status) for j in jobs] == [
        ("0", FINISHED),
        ("1", FINISHED),
        ("2", FAILED),
        ("10", UNFINISHED),
    ]
    with open(multirun / "summary.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["job", "peft.adapter.r", "optimizer.lr", "status", "val/f1_macro_best", "test/f1/red", "test/f1_macro", "error"],
        ["0", "4", "1e-4", "finished", "0.5", "1.0", "0.25", ""],
        ["1", "4", "1e-3", "finished", "0.75", "0.0", "0.5", ""],
        ["2", "8", "1e-4", "failed", "", "", "", "torch.OutOfMemoryError: CUDA out of memory"],
        ["10", "8", "1e-3", "running-or-killed", "", "", "", ""],
    ]  # fmt: skip
    md = (multirun / "summary.md").read_text()
    assert "2 finished, 1 failed, 1 running-or-killed" in md
    assert "Common overrides: `logger=csv` `data=demo`" in md
    assert "| job | peft.adapter.r | optimizer.lr | status | val/f1_macro_best | test/f1_macro |" in md
    assert "| 1 | 4 | 1e-3 | finished | 0.7500 | 0.5000 |" in md
    assert "- 2 (failed): torch.OutOfMemoryError: CUDA out of memory (see 2/error.txt)" in md
    assert "- 10 (running-or-killed): no metrics.json and no error.txt" in md


def test_heatmap_is_a_valid_image_and_marks_failed_cells(multirun, monkeypatch):
    import mmlearn.sweeps as sweeps

    drawn = {}
    real = sweeps.heatmap

    def spy(jobs, metric, x, y, path):
        drawn.update(metric=metric, x=x, y=y)
        return real(jobs, metric, x, y, path)

    monkeypatch.setattr(sweeps, "heatmap", spy)
    summarize(multirun)
    assert drawn == {"metric": "val/f1_macro_best", "x": "peft.adapter.r", "y": "optimizer.lr"}
    with Image.open(multirun / "heatmap.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 100
    summarize(multirun, metric="test/f1_macro", x="optimizer.lr", y="peft.adapter.r")
    assert drawn == {"metric": "test/f1_macro", "x": "optimizer.lr", "y": "peft.adapter.r"}


def test_heatmap_cells(multirun, monkeypatch):
    import matplotlib.axes

    texts = []
    real = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text", lambda ax, x, y, s, **kw: texts.append((x, y, s)) or real(ax, x, y, s, **kw))  # fmt: skip
    summarize(multirun)
    # x = rank (4, 8), y = lr (1e-4, 1e-3): numeric order, failed and killed cells marked
    assert sorted(texts) == [(0, 0, "0.500"), (0, 1, "0.750"), (1, 0, "failed"), (1, 1, "killed")]


def test_an_empty_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no job directories"):
        find_jobs(tmp_path)


def _train(log_dir, *overrides, timeout=900):
    """A multirun as users start it: no hydra.sweep.dir, the runs under MMLEARN_LOG_DIR; returns the
    process and its multirun directory, `<log dir>/train/multirun/<time>`."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MMLEARN_LOG_DIR=str(log_dir))
    out = subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    sweeps = list((log_dir / "train" / "multirun").glob("*"))
    assert len(sweeps) == 1, (sweeps, out.stderr[-3000:])
    return out, sweeps[0]


@pytest.mark.slow
def test_grid_multirun_and_its_summary(tmp_path, tiny_qwen2vl, demo_dir):
    out, sweep = _train(tmp_path, "-m", *TINY, "peft.adapter.r=4,8", "optimizer.lr=1e-4,1e-3",
                        "trainer.max_steps=2", f"data.root={demo_dir}")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = summarize(sweep)
    assert len(jobs) == 4 and all(j.status == FINISHED for j in jobs)
    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["peft.adapter.r"], r["optimizer.lr"]) for r in rows] == [
        ("4", "0.0001"), ("4", "0.001"), ("8", "0.0001"), ("8", "0.001")
    ]  # fmt: skip
    for row, job in zip(rows, jobs, strict=True):
        assert (
            float(row["val/f1_macro_best"])
            == json.loads((sweep / job.name / "metrics.json").read_text())["val/f1_macro_best"]
        )
        assert yaml.safe_load((sweep / job.name / "config.yaml").read_text())["peft"]["adapter"]["r"] == int(
            row["peft.adapter.r"]
        )
    with Image.open(sweep / "heatmap.png") as image:
        image.verify()


@pytest.mark.slow
def test_optuna_search_runs_its_trials(tmp_path, tiny_qwen2vl, demo_dir):
    out, sweep = _train(tmp_path, "hparams_search=lora_optuna", "hydra.sweeper.n_trials=2", *TINY,
                        "trainer.max_steps=1", "data.batch_size=16", f"data.root={demo_dir}")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {
        "peft.adapter.r", "peft.adapter.lora_alpha", "peft.adapter.lora_dropout", "optimizer.lr"
    }  # fmt: skip
    jobs = summarize(sweep)
    assert [j.status for j in jobs] == [FINISHED, FINISHED]
    assert result["best_value"] == max(j.metrics["val/f1_macro_best"] for j in jobs)


@pytest.mark.slow
def test_failed_jobs_write_their_error_and_the_sweep_goes_on(tmp_path, demo_dir):
    """Hydra 1.3's basic launcher runs every job of the batch, then re-raises the first failure."""
    out, sweep = _train(tmp_path, "-m", *TINY, f"data.root={demo_dir}",
                        "data.labels_file=/missing/a.txt,/missing/b.txt")  # fmt: skip
    assert out.returncode != 0 and "Error executing job with overrides" in out.stderr
    jobs = summarize(sweep)
    assert [j.status for j in jobs] == [FAILED, FAILED]
    for job, name in zip(jobs, ("a.txt", "b.txt"), strict=True):
        assert job.error.startswith("FileNotFoundError") and name in job.error
        assert "Traceback (most recent call last)" in (sweep / job.name / "error.txt").read_text()


@pytest.mark.parametrize(("name", "jobs"), [("lora_grid", 9), ("modality_grid", 6)])
def test_grid_files_expand_to_jobs_that_compose(name, jobs):
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from tests.conftest import CONF

    paths = ["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=[f"hparams_search={name}", *paths], return_hydra_config=True)
        assert cfg.hydra.mode.name == "MULTIRUN"
        params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
        (batch,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
        assert len(batch) == jobs
        for overrides in batch:
            compose("train", overrides=[*overrides, *paths])


def test_slurm_launcher_config_composes_offline():
    env = dict(os.environ, MMLEARN_SLURM_PARTITION="gpu-a100")
    out = subprocess.run(
        [sys.executable, "train.py", "hydra/launcher=slurm", "hydra.launcher.mem_gb=32", "--cfg", "hydra"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    launcher = yaml.safe_load(out.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["mem_gb"] == 32 and launcher["gpus_per_node"] == 1 and launcher["timeout_min"] == 720
    assert launcher["partition"] == "${oc.env:MMLEARN_SLURM_PARTITION,null}"


def test_local_launcher_is_the_default():
    out = subprocess.run(
        [sys.executable, "train.py", "--cfg", "hydra"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    hydra = yaml.safe_load(out.stdout)["hydra"]
    assert hydra["launcher"]["_target_"] == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert hydra["sweeper"]["_target_"] == "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@pytest.mark.parametrize("config", ["train", "evaluate", "compare"])
def test_the_multirun_controller_resolves_its_sweep_dir_from_the_cwd(config, tmp_path, monkeypatch):
    """What the sweeper does before any job: hydra.sweep.dir -> paths.log_dir -> ${hydra:runtime.cwd}."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from tests.conftest import CONF

    monkeypatch.chdir(tmp_path)
    for name in ("MMLEARN_ROOT", "MMLEARN_LOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MMLEARN_SWEEP_GROUP", "")  # restored (unset) afterwards
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # as in a fresh multirun process
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config, return_hydra_config=True)
    callbacks = [instantiate(c) for c in cfg.hydra.callbacks.values()]
    for callback in callbacks:
        callback.on_multirun_start(config=cfg)
    sweep_dir = Path(cfg.hydra.sweep.dir)
    assert sweep_dir.parent == tmp_path / "runs" / config / "multirun"
    assert os.environ["MMLEARN_SWEEP_GROUP"] == f"{cfg.hydra.job.name}-{sweep_dir.name}"
    for callback in reversed(callbacks):
        callback.on_multirun_end(config=cfg)
    assert HydraConfig.instance().cfg is None
