"""Few-shot selection and rendering, the image limit, the comparison statistics, and zero-shot /
few-shot evaluate.py runs with a comparison report through the real entry points."""

import csv
import json
import re

import numpy as np
import pytest
from sklearn.metrics import f1_score, hamming_loss
from transformers import AutoProcessor

from mmlearn.comparison.metrics import bootstrap_weights, weighted_metrics
from mmlearn.comparison.report import write_report
from mmlearn.data.collate import PromptCollator
from mmlearn.fewshot import ShotSelector, check_few_shot
from mmlearn.sample import Sample
from mmlearn.tasks import MultiLabelTask
from tests.conftest import chat_prompt, run_script

LABELS = ["red", "blue", "urgent", "question"]
TRAIN_SPLIT_READ = re.compile(r"\btrain: \d+ rows read")
PROGRESS_BAR = re.compile(r"Testing\b[^\n]*\b1/1\b")  # Lightning's (rich or tqdm): 1 batch of 1 done


def _pool(n=40):
    rng = np.random.default_rng(1)
    return [
        Sample(f"train-{i}", f"text {i}", None, tuple(lab for lab in LABELS if rng.random() < 0.3))
        for i in range(n)
    ]


def _query(i):
    return Sample(f"test-{i}", "q", None, ())


def _selector(**kw):
    args = {"shots": 0, "shots_per_class": None, "seed": 0, "resample": False} | kw
    return ShotSelector(_pool(), LABELS, **args)


def test_shot_selection_is_seeded_and_the_same_for_every_query():
    ids = lambda sel, q: [s.id for s in sel(q)]  # noqa: E731
    a, b = _selector(shots=3), _selector(shots=3)
    assert ids(a, _query(0)) == ids(b, _query(0)) == ids(a, _query(1))
    assert len({tuple(ids(_selector(shots=3, seed=s), _query(0))) for s in range(5)}) > 1


def test_resample_draws_per_query_but_reproducibly():
    sel = _selector(shots=2, resample=True)
    draws = [tuple(s.id for s in sel(_query(i))) for i in range(6)]
    assert len(set(draws)) > 1
    assert draws == [tuple(s.id for s in _selector(shots=2, resample=True)(_query(i))) for i in range(6)]


def test_shots_per_class_is_balanced():
    chosen = _selector(shots_per_class=2)(_query(0))
    assert len(chosen) == 2 * len(LABELS) and len({s.id for s in chosen}) == len(chosen)
    for label in LABELS:
        assert sum(label in s.labels for s in chosen) >= 2
    with pytest.raises(ValueError, match=r"only .* unused samples labelled"):
        _selector(shots_per_class=20)
    with pytest.raises(ValueError, match="not both"):
        _selector(shots=1, shots_per_class=1)


class _Spec:
    family = "idefics"


def test_too_many_images_for_a_family_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'idefics' takes at most 2 images per prompt.*need 3"):
        check_few_shot(_Spec(), chat_prompt(max_images=2), shots=2, images_per_sample=1)
    check_few_shot(_Spec(), chat_prompt(max_images=2), shots=2, images_per_sample=0)  # text only

    class PlainFormat:
        def encode(self, processor, prompts, images, answers=None): ...

    with pytest.raises(ValueError, match="cannot render in-context examples"):
        check_few_shot(_Spec(), PlainFormat(), shots=1, images_per_sample=1)


def test_shots_render_as_earlier_turns_with_their_images(tiny_qwen2vl, demo_dir):
    processor = AutoProcessor.from_pretrained(tiny_qwen2vl)
    task = MultiLabelTask(LABELS, "Labels: {labels}.")
    rows = list(csv.DictReader((demo_dir / "train.csv").open()))
    samples = [
        Sample(r["id"], r["text"], demo_dir / r["image_path"], tuple(x for x in r["labels"].split(",") if x))
        for r in rows[:4]
    ]
    shots = samples[:2]
    plain = PromptCollator(processor, chat_prompt(), task)(samples[2:])
    few = PromptCollator(processor, chat_prompt(), task, shots=lambda s: shots)(samples[2:])
    text = processor.tokenizer.decode(few["inputs"]["input_ids"][0])
    positions = [text.index(task.answer(s)) for s in shots] + [text.rindex(samples[2].text)]
    assert positions == sorted(positions) and text.count("<|im_start|>assistant") == 3
    assert text.count("<|vision_start|>") == 3
    assert len(few["inputs"]["image_grid_thw"]) == 3 * len(plain["inputs"]["image_grid_thw"])
    assert few["shot_ids"] == [[s.id for s in shots]] * 2
    assert len(set(few["prompt_ids"])) == 1 and set(few["prompt_ids"]).isdisjoint(plain["prompt_ids"])


def _fake_eval_dir(path, mode, preds, gold):
    path.mkdir(parents=True)
    info = {
        "mode": mode,
        "split": "test",
        "data": "demo",
        "model": "m",
        "task_kind": "multilabel",
        "labels": LABELS[:2],
        "decoding": "generate",
        "shots": {"shots": 0, "shots_per_class": None},
        "prompt_ids": ["p"],
        "samples": len(gold),
        "seconds": 1.0,
    }
    (path / "evaluation.json").write_text(json.dumps(info))
    rows = [
        {"id": f"s{i}", "parsed": p, "parse_ok": p is not None, "gold": g}
        for i, (p, g) in enumerate(zip(preds, gold, strict=True))
    ]
    (path / "predictions").mkdir()
    (path / "predictions" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_weighted_metrics_equal_sklearn_and_bootstrap_counts():
    rng = np.random.default_rng(0)
    pred, gold = (rng.random((30, 4)) < 0.4).astype(int), (rng.random((30, 4)) < 0.4).astype(int)
    ok = rng.random(30) < 0.8
    m = weighted_metrics(np.ones((1, 30)), pred, gold, ok, "multilabel", LABELS)
    assert m["f1_macro"][0] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    assert m["f1_weighted"][0] == pytest.approx(f1_score(gold, pred, average="weighted", zero_division=0))
    assert m["hamming_loss"][0] == pytest.approx(hamming_loss(gold, pred))
    w = bootstrap_weights(30, 5, seed=0)
    assert w.shape == (5, 30) and (w.sum(axis=1) == 30).all()
    idx = np.repeat(np.arange(30), w[0])
    resampled = weighted_metrics(w[:1], pred, gold, ok, "multilabel", LABELS)
    assert resampled["f1_micro"][0] == pytest.approx(f1_score(gold[idx], pred[idx], average="micro"))


def test_report_has_every_mode_and_metric_with_intervals(tmp_path):
    rng = np.random.default_rng(0)
    gold = [[lab for lab in LABELS[:2] if rng.random() < 0.5] for _ in range(40)]
    good = [g if rng.random() < 0.8 else [] for g in gold]
    bad = [None if rng.random() < 0.5 else [] for _ in gold]
    _fake_eval_dir(tmp_path / "a", "zero-shot", bad, gold)
    _fake_eval_dir(tmp_path / "b", "fine-tuned", good, gold)
    table = write_report({"zs": tmp_path / "a", "ft": tmp_path / "b"}, "zs", tmp_path / "r", 300, 0)
    for name in ("report.csv", "report.md", "report.json", "report.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    metrics = {r["metric"] for r in table}
    assert {"f1_macro", "subset_accuracy", "parse_failure_rate", "f1/red"} <= metrics
    assert len(table) == 2 * len(metrics)
    for row in table:
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        assert row["diff_ci_low"] <= row["diff_vs_reference"] <= row["diff_ci_high"]
        if row["mode"] == "zs":
            assert row["diff_ci_low"] == row["diff_ci_high"] == 0
    ft = {r["metric"]: r for r in table if r["mode"] == "ft"}
    assert ft["f1_macro"]["diff_ci_low"] > 0  # clearly better: the paired interval excludes zero
    _fake_eval_dir(tmp_path / "c", "other", good[:-1], gold[:-1])
    with pytest.raises(ValueError, match="different samples"):
        write_report({"zs": tmp_path / "a", "c": tmp_path / "c"}, "zs", tmp_path / "r2", 10, 0)


@pytest.mark.slow
def test_zero_shot_and_two_shot_evaluations_compare(tmp_path, tiny_qwen2vl, demo_dir):
    """The base model evaluated with constrained decoding (zero parse failures even untrained) and
    2-shot with label scoring and thresholds tuned on val, then one report on both."""
    common = [f"data.root={demo_dir}", "data.prepare.splits={train: 16, val: 8, test: 8}"]
    zero, two = tmp_path / "zero", tmp_path / "two"
    out = run_script("evaluate.py", *common, "decoding=constrained", f"hydra.run.dir={zero}")
    assert not TRAIN_SPLIT_READ.search(out.stdout + out.stderr)  # zero-shot: no train split read
    out = run_script(
        "evaluate.py", *common, "shots=2", "decoding=score", "tune_thresholds=true", f"hydra.run.dir={two}"
    )
    log = out.stdout + out.stderr  # the shots are read from the train split, never token-counted
    assert TRAIN_SPLIT_READ.search(log) and "tokens per sample" not in log
    metrics = json.loads((zero / "metrics.json").read_text())
    assert metrics["test/parse_failure_rate"] == 0 and metrics["test/samples_per_second"] > 0
    info = json.loads((two / "evaluation.json").read_text())
    assert info["mode"] == "2-shot" and len(info["shots"]["ids"]) == 2 and info["run_dir"] is None
    assert set(json.loads((two / "thresholds.json").read_text())) == set(LABELS)
    rows = [json.loads(line) for line in (two / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(
        r["shot_ids"] == info["shots"]["ids"] and set(r["scores"]) == set(LABELS) for r in rows
    )
    zero_rows = (zero / "predictions" / "test.jsonl").read_text().splitlines()
    assert json.loads(zero_rows[0])["prompt_id"] != rows[0]["prompt_id"]
    report = tmp_path / "report"
    run_script("-m", "mmlearn.comparison", str(zero), str(two), "--out", str(report), "--bootstrap", "200")
    table = list(csv.DictReader((report / "report.csv").open()))
    assert {r["mode"] for r in table} == {"zero-shot", "2-shot"}
    for r in table:
        assert float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"])
    assert "zero-shot" in (report / "report.md").read_text()


@pytest.mark.slow
def test_compare_runs_every_mode_in_one_command(tmp_path, tiny_qwen2vl, demo_dir):
    out = tmp_path / "compare"
    ran = run_script(
        "compare.py",
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        "decoding=constrained",
        "~modes.fine_tuned",
        "+modes.balanced={shots_per_class: 1}",
        "bootstrap.samples=100",
        f"hydra.run.dir={out}",
    )
    info = json.loads((out / "balanced" / "evaluation.json").read_text())
    assert info["mode"] == "4-shot" and len(info["shots"]["ids"]) == 4
    table = list(csv.DictReader((out / "report.csv").open()))
    assert {r["mode"] for r in table} == {"zero_shot", "two_shot", "balanced"}
    assert (out / "report.png").stat().st_size > 0
    assert len(PROGRESS_BAR.findall(ran.stdout + ran.stderr)) >= 3  # each mode's Trainer shows one


def test_zero_shot_base_loads_in_4_bit_with_qlora(tiny_qwen2vl, demo_dir):
    """evaluate.py model=... peft=qlora: the base model's language layers in NF4 (vision and projector
    kept out, as for QLoRA training), no adapter, and label scoring still gives a distribution."""
    import bitsandbytes as bnb
    import torch
    from hydra.utils import instantiate

    from mmlearn.building import build_datamodule
    from mmlearn.evaluation import build_base_module
    from tests.conftest import compose

    overrides = [
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        "paths.root_dir=/tmp/x",
    ]
    cfg = compose([*overrides, "peft=qlora", "decoding=score"], "evaluate")
    datamodule = build_datamodule(cfg)
    module = build_base_module(cfg, datamodule.task, instantiate(cfg.decoding)).eval()
    quantised = [n for n, m in module.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and all("visual" not in n for n in quantised)
    assert not any(p.requires_grad for p in module.model.parameters())
    datamodule.connect(module.processor, module.spec.prompt)
    batch = PromptCollator(module.processor, module.spec.prompt, datamodule.task)(
        datamodule.splits["test"][:3]
    )
    with torch.no_grad():
        decoded = module.decoder.decode(module.decoding_context, batch)
    assert all(d.parsed.ok and all(0.0 <= p <= 1.0 for p in d.scores.values()) for d in decoded)
    plain = build_base_module(compose([*overrides], "evaluate"), datamodule.task, instantiate(cfg.decoding))
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in plain.model.modules())


def test_a_run_from_before_a_model_setting_existed_gets_its_default():
    """evaluate.py run_dir=<older run>: a model key the run's config.yaml lacks comes from
    conf/model/<name>.yaml; what the run recorded is kept."""
    from omegaconf import OmegaConf

    from mmlearn.evaluation import with_new_settings
    from tests.conftest import compose

    model = compose(["paths.root_dir=/tmp/x", "model.gradient_checkpointing=true"], "train").model
    recorded = OmegaConf.create(
        {
            "model": OmegaConf.to_container(model, resolve=True),
            "paths": {"root_dir": "/tmp/x"},
            "data": {"x": 1},
        }
    )
    del recorded.model["vision_cache"]
    filled = with_new_settings(recorded)
    assert filled.model.vision_cache == compose(["paths.root_dir=/tmp/x"], "train").model.vision_cache
    assert filled.model.gradient_checkpointing is True and filled.data == recorded.data
    assert with_new_settings(filled) == filled


def test_a_run_from_before_a_data_setting_existed_gets_it_resolved_against_its_own_values():
    """A demo run recorded before data.predict_file existed still evaluates (the reader requires the
    argument); a missing derived setting is derived from the run's data.root, not today's default."""
    from omegaconf import OmegaConf

    from mmlearn.evaluation import with_new_settings
    from tests.conftest import compose

    cfg = compose(["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o", "data.root=/data/old"], "train")
    recorded = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    del recorded.data["predict_file"], recorded.data["test_file"]
    filled = with_new_settings(recorded)
    assert filled.data.predict_file is None and filled.data.test_file == "/data/old/test.csv"
    assert filled.data == OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)).data
