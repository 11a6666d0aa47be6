import pytest
import torch

from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask, MultiLabelTask

LABELS = ["red", "blue", "urgent", "question"]


@pytest.fixture
def multilabel():
    return MultiLabelTask(LABELS, "Labels: {labels}.")


@pytest.fixture
def multiclass():
    return MultiClassTask(["informative", "not_informative"], "Labels: {labels}.")


def test_prompt_lists_labels_and_text(multilabel):
    with_text = Sample(id="1", text="hi there", image_path=None, labels=("red",))
    without_text = Sample(id="2", text=None, image_path=None, labels=("red",))
    assert multilabel.prompt(with_text) == "Labels: red, blue, urgent, question.\nText: hi there"
    assert multilabel.prompt(without_text) == "Labels: red, blue, urgent, question."
    assert multilabel.answer(with_text) == '["red"]'


def test_multilabel_target_is_json_in_label_set_order(multilabel):
    assert multilabel.target(("question", "red")) == '["red", "question"]'
    assert multilabel.target(()) == "[]"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('["red", "question"]', ("red", "question")),
        ('["question", "red"]', ("red", "question")),
        ('Sure! ["Red", " BLUE "] done', ("red", "blue")),
        ('["red", "purple"]', ("red",)),
        ("[]", ()),
        ('["red", "red"]', ("red",)),
    ],
)
def test_multilabel_parser_keeps_known_labels(multilabel, output, expected):
    assert multilabel.parse(output).labels == expected


@pytest.mark.parametrize("output", ["red, blue", '["red", ', "[1, 2]", '["red" "blue"]', ""])
def test_multilabel_parser_reports_failures(multilabel, output):
    assert not multilabel.parse(output).ok


def test_multilabel_failure_is_wrong_on_every_label(multilabel):
    gold = ("red",)
    row = multilabel.prediction_row(multilabel.parse("no idea"), gold)
    assert row.tolist() == [0, 1, 1, 1]
    empty_gold_row = multilabel.prediction_row(multilabel.parse("no idea"), ())
    assert empty_gold_row.tolist() == [1, 1, 1, 1]  # never an exact match, even for "no label"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("informative", "informative"),
        (" Not_Informative.", "not_informative"),
        ("not informative", "not_informative"),
    ],
)
def test_multiclass_parser(multiclass, output, expected):
    assert multiclass.parse(output).labels == (expected,)


@pytest.mark.parametrize("output", ["maybe", "informative not_informative", ""])
def test_multiclass_failures_predict_no_class(multiclass, output):
    parsed = multiclass.parse(output)
    assert not parsed.ok
    assert multiclass.prediction_row(parsed, ("informative",)).tolist() == [0, 0]


def test_multiclass_target_needs_one_label(multiclass):
    assert multiclass.target(("informative",)) == "informative"
    with pytest.raises(ValueError, match="exactly one"):
        multiclass.target(("informative", "not_informative"))


def test_label_sets_are_validated():
    with pytest.raises(ValueError, match="duplicate"):
        MultiLabelTask(["a", "a"], "{labels}")
    with pytest.raises(ValueError, match="collide"):
        MultiLabelTask(["not_hate", "Not Hate"], "{labels}")


def test_multi_hot(multilabel):
    assert torch.equal(multilabel.to_multi_hot(("blue", "question")), torch.tensor([0, 1, 0, 1]))
