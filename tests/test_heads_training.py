"""head=linear trained through train.py on small copies of two learnable tasks: the three tiny text
encoders on labels decided by the text, two tiny VLM families on labels decided by the image; the saved
head reloads to the same probabilities (adapter and full-model runs), and a multi-label head's
thresholds are tuned on val and saved."""

import json

import pytest

from tests.conftest import run_script
from tests.heads_data import COLOURS, TEXT_CUES, csv_overrides, write_table

pytestmark = pytest.mark.slow
SPLITS = {"train": 48, "val": 12, "test": 24}
TRAIN = [
    "head=linear",
    "logger=csv",
    "optimizer.lr=3e-3",
    "scheduler.num_warmup_steps=0",
    "data.batch_size=8",
]
CHANCE = 1 / 3
# the tiny random BART's final </s> (its default pooling) learns this task slowly from 48 samples (test
# accuracy 0.71 after 12 epochs); averaged over the tokens it reaches 0.92
ENCODERS = {"distilbert_tiny": [], "modernbert_tiny": [], "bart_tiny": ["head.module.pooling=mean"]}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    base = tmp_path_factory.mktemp("head_tables")
    return {kind: write_table(base / kind, kind, SPLITS) for kind in ("text", "image")}


def _train(tmp_path_factory, name: str, *overrides) -> object:
    run = tmp_path_factory.mktemp(name) / "run"
    run_script("train.py", *TRAIN, *overrides, f"hydra.run.dir={run}")
    return run


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def encoder_runs(tmp_path_factory, tables):
    data = csv_overrides(tables["text"], list(TEXT_CUES))
    return {
        model: _train(
            tmp_path_factory,
            model,
            f"model={model}",
            "modality=text",
            "peft=none",
            "trainer.max_epochs=12",
            *data,
            *extra,
        )
        for model, extra in ENCODERS.items()
    }


@pytest.fixture(scope="module")
def vlm_runs(tmp_path_factory, tables):
    data = csv_overrides(tables["image"], list(COLOURS))
    return {
        model: _train(tmp_path_factory, model, f"model={model}", "trainer.max_epochs=6", *data)
        for model in ("qwen2vl_tiny", "llava_tiny")
    }


def _check_scored_run(run, labels, floor: float) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/accuracy"] >= floor, metrics
    assert metrics["test/parse_failure_rate"] == 0.0
    rows = _rows(run / "predictions" / "test.jsonl")
    assert len(rows) == SPLITS["test"]
    for row in rows:
        assert set(row["scores"]) == set(labels) and sum(row["scores"].values()) == pytest.approx(1, abs=1e-5)
        assert row["parsed"] == [max(row["scores"], key=row["scores"].get)]


@pytest.mark.parametrize("model", list(ENCODERS))
def test_every_tiny_text_encoder_learns_labels_decided_by_the_text(encoder_runs, model):
    run = encoder_runs[model]
    _check_scored_run(run, list(TEXT_CUES), floor=CHANCE + 0.45)
    assert (run / "model" / "head.safetensors").is_file()  # peft=none: the head next to the model
    described = json.loads((run / "model" / "mmlearn.json").read_text())
    assert described["decoding"]["decoder"] == "head"
    assert described["prompt"]["processor_call"]["padding_side"] == "right"
    assert described["loading"]["auto_class"] == "AutoModel"  # the bare encoder under the head


@pytest.mark.parametrize("model", ["qwen2vl_tiny", "llava_tiny"])
def test_two_tiny_vlm_families_learn_labels_decided_by_the_image(vlm_runs, model):
    run = vlm_runs[model]
    _check_scored_run(run, list(COLOURS), floor=CHANCE + 0.45)
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert "score_head" in adapter["modules_to_save"]


def _reloaded_scores(tmp_path_factory, run, *overrides):
    out = tmp_path_factory.mktemp("reload") / "eval"
    run_script("evaluate.py", f"run_dir={run}", f"hydra.run.dir={out}", *overrides)
    return out, {r["id"]: r["scores"] for r in _rows(out / "predictions" / "test.jsonl")}


@pytest.mark.parametrize(
    ("runs", "model"), [("vlm_runs", "qwen2vl_tiny"), ("encoder_runs", "distilbert_tiny")]
)
def test_a_reloaded_head_gives_identical_probabilities(request, tmp_path_factory, runs, model):
    """The adapter (head in modules_to_save) and the full model (head.safetensors) reload to the very
    probabilities the trained module gave on the test split."""
    run = request.getfixturevalue(runs)[model]
    trained = {r["id"]: r["scores"] for r in _rows(run / "predictions" / "test.jsonl")}
    _, reloaded = _reloaded_scores(tmp_path_factory, run)
    assert reloaded == trained


def test_multilabel_head_thresholds_are_tuned_on_val_and_saved(tmp_path_factory, tables):
    labels = list(TEXT_CUES)
    data = [*csv_overrides(tables["text"], labels), "data.task=multilabel", "data.monitor=f1_macro"]
    run = _train(
        tmp_path_factory,
        "multilabel",
        "model=distilbert_tiny",
        "modality=text",
        "peft=none",
        "trainer.max_epochs=2",
        "head.loss.class_weights=balanced",
        *data,
    )
    assert json.loads((run / "metrics.json").read_text())["test/parse_failure_rate"] == 0.0
    out, _ = _reloaded_scores(tmp_path_factory, run, "tune_thresholds=true")
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert set(thresholds) == set(labels) and all(0 <= t <= 1 for t in thresholds.values())
    assert (out / "tuning" / "predictions" / "val.jsonl").is_file()
    rows = _rows(out / "predictions" / "test.jsonl")
    for row in rows:  # the tuned thresholds decide every answer
        assert row["parsed"] == [lab for lab in labels if row["scores"][lab] >= thresholds[lab]]


def test_eval_speed_label_sets_carry_the_head_row(tmp_path, tiny_qwen2vl):
    """benchmarks/eval_speed.py's label-set rows, on a very small setting (no timing asserted)."""
    from benchmarks.eval_speed import label_set_speeds

    rows = label_set_speeds(tmp_path, [5], samples=5, eval_batch_size=8, num_workers=0, repeats=1)
    row = rows["5"]
    assert row["head"]["samples_per_second"] > 0 and row["head"]["parse_failure_rate"] == 0.0
    assert row["head_vs_score"] > 0 and row["head_vs_constrained"] > 0 and row["head_vs_generate"] > 0


@pytest.mark.parametrize("experiment", ["p3_caption_bart_head", "p5_caption_modernbert_full"])
def test_seed_003_head_experiments_run_an_epoch_on_a_small_copy(tmp_path, experiment):
    """One whole epoch (validation included: early stopping watches val/f1_weighted) on PerceptSent's
    small copy and its captions, with the experiment's model swapped for its tiny preset."""
    from tests import layouts_more

    root = tmp_path / "perceptsent"
    layouts_more.write_perceptsent(root)
    layouts_more.write_perceptsent_captions(root)
    model = experiment.split("_")[2]
    run = tmp_path / "run"
    run_script(
        "train.py",
        f"experiment=perceptsent/{experiment}",
        f"model={model}_tiny",
        "trainer.max_epochs=1",
        "logger=csv",
        f"data.root={root}",
        f"hydra.run.dir={run}",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/parse_failure_rate"] == 0.0 and "test/f1_weighted" in metrics
