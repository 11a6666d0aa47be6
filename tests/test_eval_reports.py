"""Evaluation reports: per_class.csv/.json against sklearn, the confusion counts behind confusion.png,
errors.html (order, escaping, images, placeholders), the test-stage callback, and one evaluate() run."""

import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix, precision_recall_fscore_support

from mmlearn.reports import EvaluationReport, ReportSettings, write_reports
from mmlearn.reports.confusion import confusion_data, draw_confusion
from mmlearn.reports.per_class import UNPARSED, class_view, per_class_table
from mmlearn.reports.worst_errors import worst_errors
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask, MultiLabelTask
from mmlearn.tasks.captioning import CaptioningTask
from mmlearn.tasks.multiple_choice import MultipleChoiceTask
from tests.conftest import compose


def _settings(**overrides) -> ReportSettings:
    """conf/report/default.yaml, the knobs' one home, with `overrides`."""
    from hydra.utils import instantiate

    return instantiate(compose(["paths.root_dir=/tmp/x"], "evaluate").report, **overrides)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["red", "blue", "urgent", "question"]


def _record(i, gold, parsed, **extra):
    return {
        "id": f"s{i}",
        "output": json.dumps(parsed) if parsed is not None else "no idea",
        "parsed": parsed,
        "parse_ok": parsed is not None,
        "gold": gold,
        **extra,
    }


def _multilabel_records(n=60, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        gold = [lab for lab in LABELS if rng.random() < 0.4]
        parsed = None if rng.random() < 0.15 else [lab for lab in LABELS if rng.random() < 0.4]
        records.append(_record(i, gold, parsed))
    return records


def _multiclass_records(labels, n=80, seed=1):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        gold = str(rng.choice(labels))
        parsed = None if rng.random() < 0.1 else [gold if rng.random() < 0.5 else str(rng.choice(labels))]
        records.append(_record(i, [gold], parsed))
    return records


def _sklearn_table(y_true, y_pred, labels):
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return np.stack([p, r, f], axis=1), s


def _numbers(rows):
    return np.array([[row["precision"], row["recall"], row["f1"]] for row in rows]), [
        row["support"] for row in rows
    ]


def test_multilabel_per_class_equals_sklearn_with_failures_wrong_on_every_label():
    records = _multilabel_records()
    rows = per_class_table(MultiLabelTask(LABELS, ""), records)
    hot = lambda labels: [int(lab in labels) for lab in LABELS]  # noqa: E731
    gold = np.array([hot(r["gold"]) for r in records])
    pred = np.array([hot(r["parsed"]) if r["parse_ok"] else [1 - g for g in hot(r["gold"])] for r in records])
    expected, support = _sklearn_table(gold, pred, list(range(len(LABELS))))
    values, counts = _numbers(rows)
    assert [row["label"] for row in rows] == LABELS
    np.testing.assert_allclose(values, expected)
    assert counts == support.tolist()


@pytest.mark.parametrize("labels", [["not_hateful", "hateful"], [f"sport {k}" for k in range(7)]])
def test_multiclass_and_binary_per_class_equal_sklearn_with_unparsed_as_a_class(labels):
    records = _multiclass_records(labels)
    rows = per_class_table(MultiClassTask(labels, ""), records)
    y_true = [r["gold"][0] for r in records]
    y_pred = [r["parsed"][0] if r["parse_ok"] else UNPARSED for r in records]
    assert UNPARSED in y_pred
    expected, support = _sklearn_table(y_true, y_pred, labels)
    values, counts = _numbers(rows)
    np.testing.assert_allclose(values, expected)
    assert counts == support.tolist()


def test_multiple_choice_is_reported_per_option_letter():
    task = MultipleChoiceTask("Answer with the letter.", "{letter}")
    pairs = [("A", "A"), ("B", "A"), ("C", None), ("B", "B"), ("A", "C"), ("B", "B")]
    records = [_record(i, [g], None if p is None else [p]) for i, (g, p) in enumerate(pairs)]
    view = class_view(task, records)
    assert view.labels == ["A", "B", "C"]
    rows = per_class_table(view, records)
    expected, support = _sklearn_table(
        [g for g, _ in pairs], [p or UNPARSED for _, p in pairs], ["A", "B", "C"]
    )
    np.testing.assert_allclose(_numbers(rows)[0], expected)
    assert _numbers(rows)[1] == support.tolist()


def test_confusion_counts_equal_sklearn():
    labels = ["cat", "dog", "bird"]
    records = _multiclass_records(labels)
    data = confusion_data(MultiClassTask(labels, ""), records)
    y_true = [r["gold"][0] for r in records]
    y_pred = [r["parsed"][0] if r["parse_ok"] else UNPARSED for r in records]
    assert data.gold == labels and data.predicted == [*labels, UNPARSED]
    full = confusion_matrix(y_true, y_pred, labels=[*labels, UNPARSED])
    np.testing.assert_array_equal(data.counts, full[: len(labels)])  # no gold row for (unparsed)
    assert data.counts[:, -1].sum() == sum(not r["parse_ok"] for r in records) > 0

    records = _multilabel_records()
    data = confusion_data(MultiLabelTask(LABELS, ""), records)
    hot = lambda labels: [int(lab in labels) for lab in LABELS]  # noqa: E731
    gold = np.array([hot(r["gold"]) for r in records])
    pred = np.array([hot(r["parsed"]) if r["parse_ok"] else [1 - g for g in hot(r["gold"])] for r in records])
    np.testing.assert_array_equal(data.counts, multilabel_confusion_matrix(gold, pred))


def test_confusion_picture_stays_readable_for_100_classes():
    import matplotlib.pyplot as plt

    labels = [f"sport {k}" for k in range(100)]
    data = confusion_data(MultiClassTask(labels, ""), _multiclass_records(labels, n=300))
    fig = draw_confusion(data, "t", max_tick_labels=40)
    (ax, _colorbar) = fig.axes
    numbers = [str(i) for i in range(0, 100, 10)]
    assert [t.get_text() for t in ax.get_yticklabels()] == numbers  # class numbers, not 100 names
    assert [t.get_text() for t in ax.get_xticklabels()] == [*numbers, UNPARSED]
    assert max(fig.get_size_inches()) <= 28  # bounded, not 100 x the small-case size
    plt.close(fig)
    fig = draw_confusion(data, "t", max_tick_labels=100)
    assert len(fig.axes[0].get_yticks()) == 100
    plt.close(fig)


def _image(path, color="red"):
    Image.new("RGB", (300, 200), color).save(path)
    return path


def _read_html(out):
    return (out / "errors.html").read_text(encoding="utf-8")


def _listed_ids(html):
    return re.findall(r"<td>\d+</td><td>.*?</td><td>(s\d+)</td>", html)


def test_errors_html_orders_escapes_embeds_and_shows_missing_images(tmp_path):
    task = MultiClassTask(["cat", "dog", "bird"], "")
    image = _image(tmp_path / "ok.png")
    samples = [
        Sample("s0", "a <script>alert('x')</script> & \"cat\"", image, ("cat",)),
        Sample("s1", "plain", tmp_path / "missing.png", ("dog",)),
        Sample("s2", "right", image, ("bird",)),
        Sample("s3", "unparsed", image, ("cat",)),
        Sample("s4", "text only", None, ("dog",)),
    ]
    records = [
        _record(0, ["cat"], ["dog"]),
        _record(1, ["dog"], ["cat"]),
        _record(2, ["bird"], ["bird"]),
        _record(3, ["cat"], None) | {"output": "<b>not a class</b>"},
        _record(4, ["dog"], ["bird"]),
    ]
    settings = _settings(max_errors=3, thumbnail_px=32)
    index = write_reports(tmp_path, task, records, samples, settings, "test")
    html = _read_html(tmp_path)
    # without scores: the parse failure first, then the wrong answers in prediction order, cut at 3
    assert _listed_ids(html) == ["s3", "s0", "s1"]
    assert index["errors"] == {
        "files": ["errors.html"],
        "shown": 3,
        "candidates": 4,
        "order": "parse failures first, then wrong answers",
    }
    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&amp; &quot;cat&quot;" in html and "&lt;b&gt;not a class&lt;/b&gt;" in html
    assert html.count('src="data:image/jpeg;base64,') == 2  # s3 and s0 share a readable image
    assert f"image could not be opened:<br>{tmp_path / 'missing.png'}" in html
    # with scores: the most confident mistakes first
    scored = [
        r | {"scores": {"cat": c, "dog": d, "bird": 1 - c - d}}
        for r, (c, d) in zip(
            [r for r in records if r["parse_ok"]],
            [(0.3, 0.6), (0.8, 0.1), (0.1, 0.1), (0.2, 0.1)],
            strict=True,
        )
    ]
    write_reports(tmp_path, task, scored, samples, _settings(thumbnail_px=32), "test")
    html = _read_html(tmp_path)
    assert _listed_ids(html) == ["s1", "s4", "s0"]  # confidence 0.8, 0.7, 0.6; s2 is right
    assert "confidence 0.800" in html and '<tr class="gold"><td>dog</td><td>0.100</td></tr>' in html


def test_multilabel_confidence_is_the_strongest_wrong_decision():
    records = [
        _record(
            0, ["red"], ["red", "blue"], scores={"red": 0.9, "blue": 0.55, "urgent": 0.1, "question": 0.1}
        ),
        _record(1, ["urgent"], [], scores={"red": 0.1, "blue": 0.1, "urgent": 0.05, "question": 0.1}),
        _record(2, ["red"], ["red"], scores={"red": 0.9, "blue": 0.1, "urgent": 0.1, "question": 0.1}),
    ]
    listed = worst_errors("multilabel", records, 10)
    assert [e.record["id"] for e in listed.errors] == ["s1", "s0"]  # missed urgent at P=0.05: 0.95
    assert [e.why for e in listed.errors] == ["confidence 0.950", "confidence 0.550"]


def test_captioning_lists_lowest_rouge_first_and_says_why_it_has_no_per_class_report(tmp_path):
    task = CaptioningTask("Describe the image.", "a long reference caption")
    samples = [Sample(f"s{i}", None, None, ("a dog runs on grass",)) for i in range(3)]
    records = [
        _record(0, ["a dog runs on grass"], ["a dog runs on grass"]),
        _record(1, ["a dog runs on grass"], ["a cat sleeps"]),
        _record(2, ["a dog runs on grass"], ["a dog sits"]),
    ]
    index = write_reports(tmp_path, task, records, samples, _settings(), "test")
    assert "captioning has no classes" in index["per_class"]["skipped"]
    assert "skipped" in index["confusion"]
    assert not (tmp_path / "per_class.csv").exists() and not (tmp_path / "confusion.png").exists()
    assert json.loads((tmp_path / "reports.json").read_text()) == index
    assert _listed_ids(_read_html(tmp_path)) == ["s1", "s2", "s0"]


def test_test_stage_callback_writes_the_reports_and_respects_enabled(tmp_path):
    task = MultiLabelTask(LABELS, "")
    records = _multilabel_records(n=8)
    samples = [Sample(r["id"], "t", _image(tmp_path / "i.png"), tuple(r["gold"])) for r in records]
    trainer = SimpleNamespace(world_size=1, is_global_zero=True)
    module = SimpleNamespace(task=task)

    def run(out, settings):
        callback = EvaluationReport(str(out), settings)
        callback.on_test_epoch_start(trainer, module)
        callback.on_test_batch_end(trainer, module, records[:5], {"samples": samples[:5]}, 0)
        callback.on_test_batch_end(trainer, module, records[5:], {"samples": samples[5:]}, 1)
        callback.on_test_epoch_end(trainer, module)

    run(tmp_path / "off", _settings(enabled=False))
    assert not (tmp_path / "off").exists()
    run(tmp_path / "on", _settings())
    table = list(csv.DictReader((tmp_path / "on" / "per_class.csv").open()))
    assert [float(row["f1"]) for row in table] == [row["f1"] for row in per_class_table(task, records)]
    assert json.loads((tmp_path / "on" / "per_class.json").read_text()) == per_class_table(task, records)
    assert (tmp_path / "on" / "confusion.png").read_bytes()[:8] == PNG_MAGIC
    assert "data:image/jpeg;base64," in _read_html(tmp_path / "on")


def test_the_report_knobs_have_one_home_shared_by_train_and_evaluate():
    from hydra.utils import instantiate

    overrides = ["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o", "report.max_errors=7"]
    train = compose(overrides)
    callback = instantiate(train.callbacks.evaluation_report)
    assert callback.settings == _settings(max_errors=7)
    assert instantiate(compose(overrides, "evaluate").report) == _settings(max_errors=7)


def test_evaluate_writes_reports_that_match_its_metrics(tmp_path, tiny_qwen2vl, demo_dir):
    """The untrained tiny model through evaluate() with label scoring: per-class F1 equals the logged
    test/f1/<label>, and errors.html lists the wrong answers most confident first."""
    from mmlearn.evaluation import evaluate
    from mmlearn.reports.worst_errors import confidence_in_wrong_answer

    out = tmp_path / "eval"
    cfg = compose(
        [
            f"data.root={demo_dir}",
            "data.prepare.splits={train: 16, val: 8, test: 8}",
            "decoding=score",
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={out}",
        ],
        "evaluate",
    )
    metrics = evaluate(cfg)
    table = list(csv.DictReader((out / "per_class.csv").open()))
    assert {row["label"]: float(row["f1"]) for row in table} == pytest.approx(
        {label: metrics[f"test/f1/{label}"] for label in LABELS}, abs=1e-6
    )
    assert (out / "confusion.png").read_bytes()[:8] == PNG_MAGIC
    Image.open(out / "confusion.png").verify()
    rows = [json.loads(line) for line in (out / "predictions" / "test.jsonl").read_text().splitlines()]
    wrong = [r for r in rows if set(r["parsed"]) != set(r["gold"])]
    expected = [r["id"] for r in sorted(wrong, key=lambda r: -confidence_in_wrong_answer(r, "multilabel"))]
    html = _read_html(out)
    assert re.findall(r"<td>\d+</td><td>.*?</td><td>(.*?)</td>", html) == expected
    assert html.count("data:image/jpeg;base64,") == len(expected) > 0
    index = json.loads((out / "reports.json").read_text())
    assert index["per_class"]["files"] == ["per_class.csv", "per_class.json"] and index["samples"] == 8
    assert Path(out / "metrics.json").is_file() and (out / "evaluation.json").is_file()
