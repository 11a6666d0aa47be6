"""trainer=ddp_sim: two gloo processes on the CPU through train.py. Every val/test sample is scored once
(9 samples do not split evenly), the relaunched rank writes into the same run directory, and the test
metrics and predictions equal those of one process evaluating the same adapter (evaluate.py)."""

import json

import pytest

from tests.conftest import run_script, split_metrics

pytestmark = pytest.mark.slow


def test_two_processes_score_every_sample_once_like_one_process(tmp_path, tiny_qwen2vl):
    run = tmp_path / "ddp"
    demo = tmp_path / "demo"
    run_script(
        "train.py",
        "trainer=ddp_sim",
        "logger=csv",
        f"data.root={demo}",
        "data.prepare.splits={train: 16, val: 9, test: 9}",
        "data.batch_size=2",  # per rank: a global batch of 4
        # one sample a batch: a batch's padding then cannot differ between 1 and 2 processes, so
        # greedy outputs compare bit for bit
        "data.eval_batch_size=1",
        "trainer.max_steps=2",
        "+trainer.val_check_interval=2",  # validate (under DDP) after the 2 steps
        f"hydra.run.dir={run}",
    )
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran in this directory, not a new one
    assert not [p for p in run.parent.iterdir() if p.name not in ("ddp", "demo")]
    for split in ("val", "test"):
        ids = [
            json.loads(line)["id"] for line in (run / f"predictions/{split}.jsonl").read_text().splitlines()
        ]
        assert sorted(ids) == sorted(f"{split}-{i}" for i in range(9)), split
    assert json.loads((run / "reports.json").read_text())["samples"] == 9  # reports gathered from both ranks

    run_script("evaluate.py", f"run_dir={run}")
    (eval_dir,) = (run / "eval").iterdir()
    trained = {
        k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k.startswith("test/")
    }
    assert split_metrics(eval_dir / "metrics.json") == trained
    assert (eval_dir / "predictions/test.jsonl").read_text() == (run / "predictions/test.jsonl").read_text()
