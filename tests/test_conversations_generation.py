"""task=generation: exact match, ROUGE-L and BLEU-4 on the whole reply (torchmetrics' own numbers), the
`answer_is` parser scoring long answers by their last "The answer is X.", and failures counted."""

from __future__ import annotations

import pytest
from torchmetrics.text import BLEUScore, ROUGEScore

from mmlearn.sample import Sample
from mmlearn.tasks.generation import GenerationTask, last_answer_is


def sample(reply: str, *more: str) -> Sample:
    return Sample(id=reply[:8], text="q", image_path=None, labels=(reply, *more))


def scores(task: GenerationTask, outputs: list[str], samples: list[Sample]) -> dict:
    metrics = task.build_metrics()
    metrics.update([task.parse(o, s) for o, s in zip(outputs, samples, strict=True)], samples)
    return metrics.compute()


def test_text_metrics_are_torchmetrics_and_exact_match_ignores_case_and_spacing():
    task = GenerationTask(None, ["rouge_l", "exact_match", "bleu4"], None, max_new_tokens=16)
    samples = [sample("a red ball on the grass"), sample("Two dogs", "two  dogs run")]
    outputs = ["a red ball on grass", "  two DOGS "]
    got = scores(task, outputs, samples)
    rouge = ROUGEScore(rouge_keys="rougeL", accumulate="best")
    bleu = BLEUScore(n_gram=4)
    texts, refs = [o.strip() for o in outputs], [list(s.labels) for s in samples]
    assert got["rouge_l"] == pytest.approx(float(rouge(texts, refs)["rougeL_fmeasure"]))
    assert got["bleu4"] == pytest.approx(float(bleu(texts, refs)))
    assert got["exact_match"] == 0.5 and got["parse_failure_rate"] == 0.0
    assert task.headline == "rouge_l" and task.metric_names() == sorted([*task.metrics, "parse_failure_rate"])


def test_an_empty_answer_is_a_parse_failure():
    task = GenerationTask(None, ["exact_match"], None, max_new_tokens=4)
    got = scores(task, ["   ", "yes"], [sample("no"), sample("yes")])
    assert got == {"exact_match": 0.5, "parse_failure_rate": 0.5}


def test_the_answer_is_parser_scores_long_answers_by_their_last_letter():
    task = GenerationTask(None, ["rouge_l"], "answer_is", max_new_tokens=512)
    lecture = "A magnet attracts iron. The answer is not obvious at first. "
    samples = [
        sample(lecture + "The answer is A."),
        sample(lecture + "The answer is B."),
        sample("The answer is C."),
    ]
    outputs = [
        "A lecture. Then, The answer is B. On reflection the answer is (A).",  # the last one counts
        lecture + "The answer is B.",
        "I cannot tell.",  # a failure: counted, and wrong
    ]
    got = scores(task, outputs, samples)
    assert got["accuracy"] == pytest.approx(2 / 3) and got["parse_failure_rate"] == pytest.approx(1 / 3)
    assert task.headline == "accuracy" and "accuracy" in task.metric_names()
    assert last_answer_is("The answer is A. the answer is: C") == "C" and last_answer_is("A.") is None


def test_a_reference_the_parser_cannot_read_is_refused():
    task = GenerationTask(None, ["rouge_l"], "answer_is", max_new_tokens=8)
    assert "finds no answer" in task.answer_problem("Because it is.")
    assert task.answer_problem("So the answer is D.") is None
    assert GenerationTask(None, ["rouge_l"], None, max_new_tokens=8).answer_problem("anything") is None


@pytest.mark.parametrize(
    ("metrics", "parser", "budget", "words"),
    [
        (["cider"], None, 8, "data.metrics"),
        ([], None, 8, "data.metrics"),
        (["rouge_l"], "regex", 8, "data.parser"),
        (["rouge_l"], None, 0, "data.max_new_tokens"),
    ],
)
def test_bad_settings_are_refused_by_key(metrics, parser, budget, words):
    with pytest.raises(ValueError, match=words):
        GenerationTask(None, metrics, parser, max_new_tokens=budget)
