"""Train + evaluate through the real entry points on the demo layout, and check the run directory."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, hamming_loss

from tests.conftest import run_script, split_metrics

pytestmark = pytest.mark.slow
LABELS = ["red", "blue", "urgent", "question"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, tiny_qwen2vl, demo_dir):
    run_dir = tmp_path_factory.mktemp("run") / "demo"
    run_script(
        "train.py",
        "logger=csv",
        "trainer.max_epochs=2",
        "optimizer.lr=3e-3",
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        "data.batch_size=4",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir


def _predictions(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    hot = lambda labels: [int(label in labels) for label in LABELS]  # noqa: E731
    gold = np.array([hot(r["gold"]) for r in rows])
    # the documented rule: an unparseable answer is wrong on every label
    pred = np.array([hot(r["parsed"]) if r["parse_ok"] else [1 - g for g in hot(r["gold"])] for r in rows])
    return rows, gold, pred


def test_run_directory_holds_everything(short_run):
    for name in (
        "config.yaml",
        "metrics.json",
        "data_summary.json",
        "predictions/test.jsonl",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "checkpoints/last.ckpt",
    ):
        assert (short_run / name).is_file(), name
    summary = json.loads((short_run / "data_summary.json").read_text())
    assert {s: summary[s]["samples_read"] for s in summary} == {"train": 16, "val": 8, "test": 8}
    assert sum(summary["test"]["label_counts"].values()) > 0
    metrics = json.loads((short_run / "metrics.json").read_text())
    assert {"test/f1_macro", "test/hamming_loss", "test/parse_failure_rate", "test/subset_accuracy"} <= set(
        metrics
    )


def test_test_stage_writes_the_evaluation_reports(short_run):
    """callbacks.evaluation_report: per-class F1 equal to the logged test/f1/<label>, and the other reports."""
    metrics = json.loads((short_run / "metrics.json").read_text())
    table = list(csv.DictReader((short_run / "per_class.csv").open()))
    assert {row["label"]: float(row["f1"]) for row in table} == pytest.approx(
        {label: metrics[f"test/f1/{label}"] for label in LABELS}, abs=1e-6
    )
    assert (short_run / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = json.loads((short_run / "reports.json").read_text())
    assert index["split"] == "test" and index["samples"] == 8 and "error" not in index
    assert "<h1>test: worst errors</h1>" in (short_run / "errors.html").read_text()


def test_checkpoint_holds_only_trainable_weights(short_run):
    import torch

    ckpt = torch.load(short_run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["state_dict"] and all("lora_" in key for key in ckpt["state_dict"])
    assert ckpt["optimizer_states"]


def test_metrics_recompute_from_predictions_with_sklearn(short_run):
    metrics = json.loads((short_run / "metrics.json").read_text())
    rows, gold, pred = _predictions(short_run / "predictions" / "test.jsonl")
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    assert metrics["test/f1_macro"] == pytest.approx(
        f1_score(gold, pred, average="macro", zero_division=0), abs=1e-6
    )
    assert metrics["test/f1_micro"] == pytest.approx(
        f1_score(gold, pred, average="micro", zero_division=0), abs=1e-6
    )
    assert metrics["test/hamming_loss"] == pytest.approx(hamming_loss(gold, pred), abs=1e-6)
    failures = sum(not r["parse_ok"] for r in rows) / len(rows)
    assert metrics["test/parse_failure_rate"] == pytest.approx(failures, abs=1e-6)


def test_evaluate_reproduces_the_test_metrics(short_run):
    run_script("evaluate.py", f"run_dir={short_run}")
    (eval_dir,) = (short_run / "eval").iterdir()
    test_metrics = split_metrics(short_run / "metrics.json")
    assert split_metrics(eval_dir / "metrics.json") == test_metrics
    trained = (short_run / "predictions" / "test.jsonl").read_text()
    assert (eval_dir / "predictions" / "test.jsonl").read_text() == trained


def test_export_merges_the_adapter_into_a_loadable_model(short_run):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmlearn.models.adapters import load_adapter

    run_script("export.py", f"run_dir={short_run}", "merge=true")
    merged_dir = short_run / "export"
    assert (merged_dir / "config.json").is_file() and not (merged_dir / "adapter_config.json").exists()
    processor = AutoProcessor.from_pretrained(merged_dir)
    ids = processor.tokenizer(["Labels: red, blue. Text: help now"], return_tensors="pt")
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    base_path = json.loads((short_run / "adapter" / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ]
    unmerged = load_adapter(
        AutoModelForImageTextToText.from_pretrained(base_path), short_run / "adapter"
    ).eval()
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": processor.tokenizer.pad_token_id}
    with torch.no_grad():
        assert torch.equal(merged.generate(**ids, **kwargs), unmerged.generate(**ids, **kwargs))
    again = run_script("export.py", f"run_dir={short_run}", "merge=true", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr + again.stdout


@pytest.mark.parametrize("peft", ["dora", "qlora", "none"])
def test_other_peft_methods_train_and_evaluate(tmp_path, tiny_qwen2vl, demo_dir, peft):
    run = tmp_path / peft
    run_script(
        "train.py",
        f"peft={peft}",
        "logger=csv",
        "trainer.max_steps=1",
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        "data.batch_size=4",
        f"hydra.run.dir={run}",
    )
    assert (run / ("model/config.json" if peft == "none" else "adapter/adapter_config.json")).is_file()
    run_script("evaluate.py", f"run_dir={run}")
    (eval_dir,) = (run / "eval").iterdir()
    assert split_metrics(eval_dir / "metrics.json") == split_metrics(run / "metrics.json")


def test_a_finished_run_directory_is_not_overwritten(short_run):
    before = (short_run / "metrics.json").read_text()
    out = run_script(
        "train.py", "logger=csv", "trainer.max_steps=1", f"hydra.run.dir={short_run}", check=False
    )
    assert out.returncode != 0 and "already holds a finished run" in out.stderr + out.stdout
    assert (short_run / "metrics.json").read_text() == before


def test_skip_mode_writes_the_skipped_rows(tmp_path, tiny_qwen2vl, demo_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    lines = (data / "train.csv").read_text().splitlines()
    lines[3] = lines[3].replace("images/", "images/missing_")
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    common = [
        "logger=csv",
        "trainer.max_steps=1",
        "data=csv",
        f"data.train_file={data}/train.csv",
        f"data.val_file={data}/val.csv",
        f"data.test_file={data}/test.csv",
        f"data.image_root={data}",
        f"data.labels_file={data}/labels.txt",
    ]
    failed = run_script("train.py", *common, f"hydra.run.dir={tmp_path / 'strict'}", check=False)
    assert failed.returncode != 0 and f"{data}/train.csv:4" in failed.stderr + failed.stdout
    run = tmp_path / "lenient"
    run_script("train.py", *common, "data.on_bad_sample=skip", f"hydra.run.dir={run}")
    summary = json.loads((run / "data_summary.json").read_text())
    assert summary["train"]["samples_read"] == 16 and summary["train"]["samples_skipped"] == 1
    skipped = [json.loads(line) for line in (run / "skipped_samples.jsonl").read_text().splitlines()]
    assert [s["source"] for s in skipped] == [f"{data}/train.csv:4"]


def test_full_demo_reaches_the_promised_f1(tmp_path, tiny_qwen2vl):
    """The README's main job: the demo experiment must beat 0.90 test macro-F1 (untrained: near 0)."""
    run = tmp_path / "demo"
    run_script("train.py", "experiment=demo", "logger=csv", f"hydra.run.dir={run}")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/f1_macro"] >= 0.90, metrics
