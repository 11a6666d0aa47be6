"""Multiple choice (ScienceQA): LLaVA prompt, letter parser, accuracy by image, the original layout."""

import json
import math
import shutil
from pathlib import Path

import pytest
from hydra.utils import instantiate

from mmlearn.data.sample import BadSampleError
from mmlearn.sample import Sample
from mmlearn.tasks.base import Parsed
from mmlearn.tasks.multiple_choice import MultipleChoiceMetrics, MultipleChoiceTask
from tests.conftest import compose, run_script, split_metrics
from tests.layouts_qa_captions import write_scienceqa

INSTRUCTION = "Answer with the option's letter from the given choices directly."


def _sample(labels=("B",), choices=("cat", "dog", "cow"), image=None, context=None, sid="q"):
    return Sample(sid, "Which one barks?", image, labels, choices=choices, context=context)


def _task(template="{letter}"):
    return MultipleChoiceTask(INSTRUCTION, template)


def test_prompt_follows_llava_question_context_options():
    task = _task()
    assert task.prompt(_sample(context="A farm.")) == (
        f"Which one barks?\nContext: A farm.\nOptions: (A) cat (B) dog (C) cow\n{INSTRUCTION}"
    )
    assert "\nContext: N/A\n" in task.prompt(_sample(context=None))
    assert MultipleChoiceTask("", "{letter}").prompt(_sample()).endswith("(C) cow")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("B", ("B",)),
        ("(B)", ("B",)),
        ("B.", ("B",)),
        ("B. dog", ("B",)),
        ("(B) dog", ("B",)),
        (" C\n", ("C",)),
        ("The answer is B.", ("B",)),
        ("It barks. The answer is A. No wait, the answer is (C).", ("C",)),
        ("D", None),  # a letter outside this question's three options
        ("The answer is E.", None),
        ("A dog barks.", None),  # a sentence starting with the article "A" names no option
        ("the answer is a dog", None),
        ("dog", None),
        ("", None),
    ],
)
def test_parser(output, expected):
    assert _task().parse(output, _sample()).labels == expected


@pytest.mark.parametrize(
    ("template", "target"), [("{letter}", "B"), ("The answer is {letter}.", "The answer is B.")]
)
def test_both_answer_formats_train_and_parse_back(template, target):
    task = _task(template)
    assert task.answer(_sample()) == target
    assert task.parse(target, _sample()) == Parsed(("B",))
    assert len(task.longest_answer()) >= len(target)


def test_answer_template_needs_the_letter():
    with pytest.raises(ValueError, match="letter"):
        MultipleChoiceTask(INSTRUCTION, "The answer is X.")


def test_accuracy_by_image_against_hand_counts():
    img = Path("x.png")
    samples = [
        _sample(("A",), image=img),
        _sample(("B",), image=img),
        _sample(("C",), image=img),
        _sample(("A",)),
        _sample(("B",)),
    ]
    # image: right, right, wrong; no image: right, parse failure
    parsed = [Parsed(("A",)), Parsed(("B",)), Parsed(("A",)), Parsed(("A",)), Parsed(None)]
    metrics = MultipleChoiceMetrics()
    metrics.update(parsed[:2], samples[:2])
    metrics.update(parsed[2:], samples[2:])
    assert metrics.compute() == pytest.approx(
        {
            "accuracy": 3 / 5,
            "accuracy_with_image": 2 / 3,
            "accuracy_without_image": 1 / 2,
            "parse_failure_rate": 1 / 5,
        }
    )
    assert sorted(metrics.names()) == sorted(metrics.compute())
    metrics.reset()
    metrics.update(parsed[3:4], samples[3:4])
    values = metrics.compute()
    assert values["accuracy"] == 1.0 and math.isnan(values["accuracy_with_image"])


# --- the reader -----------------------------------------------------------------------------------


@pytest.fixture
def sqa(tmp_path):
    return write_scienceqa(tmp_path / "scienceqa")


def _datamodule(root, *overrides, modality="text_image"):
    cfg = compose(["data=scienceqa", f"data.root={root}", f"modality={modality}", *overrides])
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup()
    return dm


def test_reads_the_configured_pid_lists(sqa):
    dm = _datamodule(sqa)
    assert {s: len(v) for s, v in dm.splits.items()} == {"train": 6, "val": 3, "test": 4}
    summary = dm.summary()
    assert summary["settings"]["questions_with_image"] == {"train": 3, "val": 1, "test": 2}
    assert summary["train"]["label_counts"] == {"A": 2, "B": 2, "C": 1, "D": 1}
    q4 = next(s for s in dm.splits["train"] if s.id == "4")
    assert (q4.context, q4.image_path, q4.labels) == ("Mona will pack her suitcase.", None, ("B",))
    q7 = dm.splits["val"][0]
    assert q7.image_path == sqa / "images" / "val" / "7" / "image.png" and q7.context is None
    assert q7.choices == ("Iowa", "Ohio", "Utah", "Maine") and q7.labels == ("C",)
    assert {len(v) for v in _datamodule(sqa, "data.splits={train: minitrain, val: val}").splits.values()} == {
        3,
        4,
    }


def test_text_only_never_touches_images(sqa):
    shutil.rmtree(sqa / "images")
    dm = _datamodule(sqa, modality="text")
    assert all(s.image_path is None and s.text for v in dm.splits.values() for s in v)


def test_image_only_is_refused(sqa):
    with pytest.raises(Exception, match="modality=text"):
        _datamodule(sqa, modality="image")


def _edit_problem(root, pid, **changes):
    problems = json.loads((root / "problems.json").read_text())
    problems[pid].update(changes)
    (root / "problems.json").write_text(json.dumps(problems, indent=4))


@pytest.mark.parametrize(
    ("break_it", "where", "message"),
    [
        (lambda r: _edit_problem(r, "2", answer=3), "problems.json:2", "answer index 3 is out of range"),
        (lambda r: (r / "images/train/6/image.png").unlink(), "problems.json:6", "image not found"),
        (lambda r: _edit_problem(r, "3", choices="ill"), "problems.json:3", "choices must be a list"),
    ],
)
def test_bad_questions_fail_naming_file_and_key(sqa, break_it, where, message):
    break_it(sqa)
    with pytest.raises(BadSampleError, match=message) as err:
        _datamodule(sqa)
    assert f"{sqa}/{where}" in str(err.value)


def test_unknown_pid_fails_naming_pid_splits_and_key(sqa):
    splits = json.loads((sqa / "pid_splits.json").read_text())
    splits["train"].append("999")
    (sqa / "pid_splits.json").write_text(json.dumps(splits))
    with pytest.raises(BadSampleError, match="pid '999' is not in") as err:
        _datamodule(sqa)
    assert f"{sqa}/pid_splits.json:train[6]" in str(err.value)
    dm = _datamodule(sqa, "data.on_bad_sample=skip")
    assert dm.summary()["train"]["samples_skipped"] == 1 and len(dm.splits["train"]) == 6


def test_skip_mode_counts_each_bad_question(sqa):
    _edit_problem(sqa, "2", answer=-1)
    (sqa / "images/train/6/image.png").unlink()
    dm = _datamodule(sqa, "data.on_bad_sample=skip")
    train = dm.summary()["train"]
    assert (train["samples_read"], train["samples_kept"], train["skipped_by_reason"]) == (
        6,
        4,
        {"row": 1, "image": 1},
    )
    assert [s["id"] for s in dm.skipped()] == ["2", "6"]


def test_missing_pid_list_is_an_error(sqa):
    splits = json.loads((sqa / "pid_splits.json").read_text())
    del splits["minival"]
    (sqa / "pid_splits.json").write_text(json.dumps(splits))
    with pytest.raises(ValueError, match="'minival'"):
        _datamodule(sqa)


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_then_evaluate_reproduces_the_metrics(tmp_path, tiny_qwen2vl):
    root, run = write_scienceqa(tmp_path / "scienceqa"), tmp_path / "run"
    common = [f"data.root={root}", "data.batch_size=3", "data.eval_batch_size=4"]
    run_script(
        "train.py",
        "data=scienceqa",
        *common,
        "model=qwen2vl_tiny",
        "trainer.max_steps=2",
        "logger=csv",
        f"hydra.run.dir={run}",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    names = ("accuracy", "accuracy_with_image", "accuracy_without_image", "parse_failure_rate")
    assert {f"test/{n}" for n in names} <= set(metrics) and "val/accuracy_best" in metrics
    rows = [json.loads(line) for line in (run / "predictions/test.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["11", "12", "13", "14"] and [r["with_image"] for r in rows] == [
        True,
        False,
        True,
        False,
    ]
    correct = sum(r["parse_ok"] and r["parsed"] == r["gold"] for r in rows)
    assert metrics["test/accuracy"] == pytest.approx(correct / 4)
    run_script("evaluate.py", f"run_dir={run}")
    (eval_dir,) = (run / "eval").iterdir()
    test_metrics = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert split_metrics(eval_dir / "metrics.json") == test_metrics
    assert (eval_dir / "predictions/test.jsonl").read_text() == (run / "predictions/test.jsonl").read_text()
