"""W&B, offline: what a run logs is read back from its `.wandb` file (no network, no credentials)."""

import glob
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from mmlearn.wandb_report import UNPARSED, WandbReport, per_class_rows
from tests.conftest import REPO


def wandb_records(run_dir: Path, wait_s: float = 30) -> list:
    """The records of an offline run, once its `exit` record is written (wandb-core, a separate process,
    may still be writing when `wandb.finish()` returns)."""
    deadline = time.monotonic() + wait_s
    while True:
        records = _read_records(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _read_records(run_dir: Path) -> list:
    """The protobuf records of a `.wandb` file (LevelDB log format: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = glob.glob(str(run_dir / "*.wandb"))
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):
            pos += left
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def _of(records, kind):
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def _table(run_dir: Path, key: str) -> dict:
    (path,) = glob.glob(str(run_dir / "files" / "media" / "table" / f"{key}_*.table.json"))
    return json.loads(Path(path).read_text())


def test_per_class_rows_match_sklearn():
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 2, (40, 5)), rng.integers(0, 2, (40, 5))
    pred[:, 4] = 0  # a class never predicted: precision 0, not undefined
    rows = per_class_rows(list("abcde"), gold.tolist(), pred.tolist())
    p, r, f, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    assert [row[0] for row in rows] == list("abcde")
    np.testing.assert_allclose([row[7:] for row in rows], np.stack([p, r, f], axis=1))
    assert [row[1] for row in rows] == support.tolist()
    assert all(sum(row[3:7]) == 40 for row in rows)


def test_multiclass_confusion_counts_unparsed_answers(tmp_path, monkeypatch):
    """The callback on its own (a minimal trainer): a multiclass confusion matrix with an (unparsed)
    column, the sample table with images, and nothing at all without a W&B logger."""
    from lightning.pytorch.loggers import CSVLogger
    from PIL import Image

    from mmlearn.sample import Sample
    from mmlearn.tasks.classification import MultiClassTask
    from mmlearn.tracking import finish_wandb_run, wandb_logger

    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):  # artifact staging: not $HOME
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(image)
    task = MultiClassTask(["cat", "dog"], "Which animal? {labels}")
    samples = [Sample(f"s{i}", f"text {i}", image, (gold,)) for i, gold in enumerate(["cat", "dog", "dog"])]
    records = [
        {"id": "s0", "output": "cat", "parsed": ["cat"], "parse_ok": True, "gold": ["cat"]},
        {"id": "s1", "output": "cat", "parsed": ["cat"], "parse_ok": True, "gold": ["dog"]},
        {"id": "s2", "output": "a bird", "parsed": None, "parse_ok": False, "gold": ["dog"]},
    ]
    module = SimpleNamespace(task=task, is_peft=True)

    report_dir = tmp_path / "report"  # what EvaluationReport writes before WandbReport.on_test_end
    report_dir.mkdir()
    Image.new("RGB", (8, 8), "blue").save(report_dir / "confusion.png")
    (report_dir / "errors.html").write_text("<html><body>worst errors of s1</body></html>")

    def run_callback(loggers):
        trainer = SimpleNamespace(loggers=loggers, is_global_zero=True, callback_metrics={})
        callback = WandbReport(sample_rows=2, log_adapter=False, report_dir=str(report_dir))
        callback.on_test_epoch_start(trainer, module)
        callback.on_test_batch_end(trainer, module, records, {"samples": samples}, 0)
        callback.on_test_end(trainer, module)
        return callback

    assert run_callback([CSVLogger(tmp_path)])._records == []  # nothing collected, nothing logged
    logger = wandb_logger(offline=True, save_dir=str(tmp_path), project="t")
    run_dir = Path(logger.experiment.dir).parent
    run_callback([logger])
    finish_wandb_run(0)
    table = _table(run_dir, "test/confusion_table")  # wandb.plot.confusion_matrix's data
    assert table["columns"] == ["Actual", "Predicted", "nPredictions"]
    counts = {(row[0], row[1]): row[2] for row in table["data"]}
    assert counts[("cat", "cat")] == 1 and counts[("dog", "cat")] == 1 and counts[("dog", UNPARSED)] == 1
    assert sum(counts.values()) == 3
    (art,) = [a for a in _of(wandb_records(run_dir), "artifact") if "testsamples" in a.name]
    assert sum(c.path.startswith("media/images/") for c in art.manifest.contents) >= 1
    assert _table(run_dir, "test/samples")["data"][1][:4] == ["s1", "Image", "text 1", "dog"]
    assert len(_table(run_dir, "test/samples")["data"]) == 2
    media = run_dir / "files" / "media"
    assert len(glob.glob(str(media / "images" / "test" / "confusion_png_*.png"))) == 1
    (html,) = glob.glob(str(media / "html" / "test" / "errors_*.html"))
    assert "worst errors of s1" in Path(html).read_text()


@pytest.mark.slow
def test_multirun_logs_one_grouped_run_per_job_with_tables_images_and_adapter(
    tmp_path, tiny_qwen2vl, demo_dir
):
    """Without credentials (clean HOME, no WANDB_MODE) each job logs offline to its own run in the
    sweep's group: config, per-class table, per-label confusion, sample table with images, adapter."""
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    out = subprocess.run(
        [sys.executable, "train.py", "-m", "logger=wandb", "trainer.max_steps=1", "optimizer.lr=1e-3,2e-3",
         f"data.root={demo_dir}", "data.prepare.splits={train: 16, val: 8, test: 8}",
         "callbacks.wandb_report.log_adapter=true", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(env, HOME=str(tmp_path)),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wandb sync" in out.stdout + out.stderr
    run_ids = set()
    for job in ("0", "1"):
        (run_dir,) = (sweep / job / "wandb").glob("offline-run-*")
        records = wandb_records(run_dir)
        (run,) = _of(records, "run")
        run_ids.add(run.run_id)
        assert run.run_group == "train-sweep" and run.job_type == "train"
        assert list(run.tags) == ["qwen2vl_tiny", "demo", "text_image", "lora"]
        config = {u.key: json.loads(u.value_json) for c in _of(records, "config") for u in c.update if u.key}
        assert config["config"]["optimizer"]["lr"] == [1e-3, 2e-3][int(job)]
        assert config["data_summary"]["test"]["samples_read"] == 8
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        per_class = _table(run_dir, "test/per_class")
        assert [row[0] for row in per_class["data"]] == ["red", "blue", "urgent", "question"]
        assert {row[0]: row[-1] for row in per_class["data"]} == {
            label: metrics[f"test/f1/{label}"] for label in ("red", "blue", "urgent", "question")
        }
        assert _table(run_dir, "test/confusion")["columns"] == ["label", "tp", "fp", "fn", "tn"]
        samples = _table(run_dir, "test/samples")
        assert len(samples["data"]) == 8  # 16 rows asked, the test split has 8
        artifacts = {a.type + ":" + a.name: a for a in _of(records, "artifact")}
        (table_art,) = [
            a for key, a in artifacts.items() if key.startswith("run_table:") and "testsamples" in key
        ]
        assert sum(c.path.startswith("media/images/") for c in table_art.manifest.contents) == 8
        adapter = artifacts[f"model:adapter-{run.run_id}"]
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {
            c.path for c in adapter.manifest.contents
        }
        assert json.loads(adapter.metadata)["test/f1_macro"] == metrics["test/f1_macro"]
        assert _of(records, "exit")[0].exit_code == 0
    assert len(run_ids) == 2
