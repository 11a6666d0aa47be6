"""evaluate.py run_dir=<run> through the real entry point: another CSV file (cross-dataset, with the label
set checked), two DDP processes giving one process's metrics, unlabelled rows predicted, a progress bar,
no train split read, and directories named by what they hold."""

import csv
import json
import re

import pytest
from omegaconf import OmegaConf

from mmlearn.data.demo import build_demo
from tests.conftest import run_script, split_metrics, train_demo_run

pytestmark = pytest.mark.slow
TRAIN_SPLIT_READ = re.compile(r"\btrain: \d+ rows read")
PROGRESS_BAR = re.compile(r"Testing\b.*\b1/1\b")  # Lightning's (rich or tqdm): 1 batch of 1 done


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_qwen2vl, demo_dir):
    return train_demo_run(tmp_path_factory, demo_dir)


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """Another file of the same layout and label set: 5 different rows."""
    return build_demo(
        tmp_path_factory.mktemp("other"), splits={"train": 2, "val": 2, "test": 5}, image_size=56, seed=1
    )


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _new_eval_dir(run, before: set, prefix: str):
    (made,) = {p for p in (run / "eval").iterdir()} - before
    assert made.name.startswith(prefix), made.name
    return made


def _eval_dirs(run):
    return set((run / "eval").iterdir()) if (run / "eval").is_dir() else set()


def _csv_data(root, labels_file):
    return [
        "data=csv",
        "data.train_file=null",
        "data.val_file=null",
        f"data.test_file={root / 'test.csv'}",
        f"data.image_root={root}",
        f"data.labels_file={labels_file}",
    ]


def test_another_csv_file_is_evaluated_with_a_progress_bar_and_no_train_split(run, other):
    before = _eval_dirs(run)
    out = run_script("evaluate.py", f"run_dir={run}", *_csv_data(other, other / "labels.txt"))
    evaluated = _new_eval_dir(run, before, "test-generate-")
    gold = {
        r["id"]: sorted(x for x in r["labels"].split(",") if x)
        for r in csv.DictReader((other / "test.csv").open())
    }
    rows = _rows(evaluated / "predictions" / "test.jsonl")
    assert {r["id"]: sorted(r["gold"]) for r in rows} == gold and len(rows) == 5
    assert json.loads((evaluated / "evaluation.json").read_text())["data"] == "csv"
    assert json.loads((evaluated / "reports.json").read_text())["samples"] == 5
    log = out.stdout + out.stderr
    assert PROGRESS_BAR.search(log)
    assert not TRAIN_SPLIT_READ.search(log) and "tokens per sample" not in log


def test_another_label_set_is_refused_naming_both(run, other, tmp_path):
    (tmp_path / "labels.txt").write_text("red\nblue\nurgent\n")
    out = run_script("evaluate.py", f"run_dir={run}", *_csv_data(other, tmp_path / "labels.txt"), check=False)
    learned = (other / "labels.txt").read_text().split()
    assert out.returncode != 0
    assert f"label set {learned}" in out.stderr and "has ['red', 'blue', 'urgent']" in out.stderr


def test_two_ddp_processes_give_the_metrics_of_one(run, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # one sample a batch, so that padding cannot differ between one and two processes
    run_script("evaluate.py", f"run_dir={run}", "data.eval_batch_size=1", f"hydra.run.dir={one}")
    run_script(
        "evaluate.py", f"run_dir={run}", "data.eval_batch_size=1", "trainer=ddp_sim", f"hydra.run.dir={two}"
    )
    assert (two / "train_ddp_process_1.log").is_file()  # the second rank ran, in the same directory
    assert split_metrics(two / "metrics.json") == split_metrics(one / "metrics.json")
    assert (two / "predictions/test.jsonl").read_text() == (one / "predictions/test.jsonl").read_text()
    assert len(_rows(two / "predictions/test.jsonl")) == 8
    recorded = OmegaConf.load(two / "config.yaml")  # what was evaluated: the run's config + the command line
    assert recorded.trainer.devices == 2 and recorded.data.eval_batch_size == 1


def test_unlabelled_rows_get_answers_and_scores(run, other, tmp_path):
    new = tmp_path / "new.csv"
    with (other / "test.csv").open() as source, new.open("w", newline="") as handle:
        rows = [{k: v for k, v in row.items() if k != "labels"} for row in csv.DictReader(source)]
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = _eval_dirs(run)
    run_script("evaluate.py", f"run_dir={run}", "split=predict", f"predict_file={new}", "decoding=score")
    evaluated = _new_eval_dir(run, before, "predict-score-")
    predicted = _rows(evaluated / "predictions" / "predict.jsonl")
    labels = (other / "labels.txt").read_text().split()
    assert [r["id"] for r in predicted] == [r["id"] for r in rows]
    assert all("gold" not in r and r["parse_ok"] and set(r["scores"]) == set(labels) for r in predicted)
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["predict/parse_failure_rate"] == 0.0 and not (evaluated / "per_class.csv").exists()
