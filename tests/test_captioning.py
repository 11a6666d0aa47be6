"""Captioning (sports captions): parser, BLEU-4 / ROUGE-L / CIDEr-D by hand, the original layout."""

import json
import math

import pytest
from hydra.utils import instantiate

from mmlearn.data.sample import BadSampleError
from mmlearn.sample import Sample
from mmlearn.tasks.base import Parsed
from mmlearn.tasks.caption_scores import cider_d, cider_d_scores, lcs_length, rouge_l, words
from mmlearn.tasks.captioning import CaptioningTask, CaptionMetrics
from tests.conftest import compose, run_script, split_metrics
from tests.layouts_qa_captions import CAPTIONS, write_sports_captions

PROMPT = "Question: What is a caption for this photo?\nAnswer:"


def _sample(*refs, sid="img.jpg"):
    return Sample(sid, None, None, tuple(refs))


def _scores(pairs):
    metrics = CaptionMetrics()
    metrics.update([Parsed((c,)) if c else Parsed(None) for c, _ in pairs], [_sample(*r) for _, r in pairs])
    return metrics.compute()


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("A man throws a ball.", ("A man throws a ball.",)),
        ("  A man   throws\ta ball.  \nQuestion: what?", ("A man throws a ball.",)),
        ('\n\n"Two dogs run."', ("Two dogs run.",)),
        ("   \n ", None),
        ("", None),
    ],
)
def test_parse_keeps_the_first_line_and_fails_on_empty(output, expected):
    task = CaptioningTask(PROMPT, "a long caption")
    assert task.parse(output, _sample("ref")).labels == expected


def test_prompt_answer_and_budget():
    task = CaptioningTask(PROMPT, "the longest reference caption .")
    sample = _sample("first caption .", "second caption .")
    assert task.prompt(sample) == PROMPT
    assert task.answer(sample) == "first caption ."
    assert task.longest_answer() == "the longest reference caption ."
    with pytest.raises(ValueError):
        CaptioningTask(PROMPT, " ")


def test_words_lowercase_and_drop_punctuation():
    assert words('A "Bulldogs" player, number 23 , runs .') == [
        "a",
        "bulldogs",
        "player",
        "number",
        "23",
        "runs",
    ]


def test_bleu4_by_hand():
    one = _scores([("a b c d e", ["a b c d f"])])["bleu4"]
    assert one == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, abs=1e-6)
    # corpus level: clipped n-gram counts and lengths are summed before dividing;
    # candidate lengths 5 + 4 = 9, closest reference lengths 5 + 6 = 11
    both = _scores([("A b, c d e.", ["a b c d f"]), ("a b c d", ["a b c d e f", "x"])])["bleu4"]
    precisions = (8 / 9) * (6 / 7) * (4 / 5) * (2 / 3)
    assert both == pytest.approx(math.exp(1 - 11 / 9) * precisions**0.25, abs=1e-6)


def test_bleu4_ties_take_the_shorter_reference_like_coco():
    # both references are 1 word away from the 4-word candidate: the shorter (3) sets no penalty
    score = _scores([("a b c d", ["a b c d e", "a b c"])])["bleu4"]
    assert score == pytest.approx(1.0, abs=1e-6)


def test_rouge_l_by_hand():
    assert lcs_length(list("abcd"), list("axcde")) == 3
    p, r, beta2 = 3 / 4, 3 / 5, 1.2**2
    assert rouge_l("a b c d", ["a x c d e"]) == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))
    # precision and recall take their best reference separately (pycocoevalcap's rule)
    assert rouge_l("a b c d", ["a c", "a b c d e f"]) == pytest.approx(1.0)
    assert rouge_l("", ["a b"]) == 0.0 and rouge_l("z", ["a b"]) == 0.0


def test_cider_d_two_image_corpus_by_hand():
    # N = 2 images, every reference n-gram in one image only: tf-idf weight log 2 for all n-grams.
    # Image 1: candidate = reference "a b": cosine 1 for unigrams and bigrams, 0 for 3/4-grams
    # -> 10 * (1 + 1 + 0 + 0) / 4 = 5. Image 2: "c e" vs "c d": unigram cosine 1/2, rest 0 -> 1.25.
    candidates, references = ["a b", "c e"], [["a b"], ["c d"]]
    assert cider_d_scores(candidates, references) == pytest.approx([5.0, 1.25])
    assert cider_d(candidates, references) == pytest.approx(3.125)


def test_cider_d_document_frequency_length_penalty_and_several_references():
    candidates = ["a b", "a", "d e f"]
    references = [["a b"], ["a c"], ["d e", "d f"]]
    big_l = math.log(3)  # log of the number of images
    a = big_l - math.log(2)  # "a" occurs in the references of two images
    penalty = math.exp(-1 / 72)  # one bigram of length difference, sigma 6
    expected = [
        5.0,
        10 * (a / math.sqrt(a**2 + big_l**2)) * penalty / 4,
        # vs "d e": unigrams 2/sqrt(6), bigrams 1/sqrt(2); vs "d f": unigrams 2/sqrt(6); averaged over 2
        10 * penalty * (4 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 / 2,
    ]
    assert cider_d_scores(candidates, references) == pytest.approx(expected)
    assert cider_d(candidates, references) == pytest.approx(sum(expected) / 3)


def test_caption_metrics_score_failures_as_empty_captions():
    values = _scores([("a b", ["a b"]), ("", ["c d"])])
    assert values["parse_failure_rate"] == 0.5
    assert values["cider"] == pytest.approx(cider_d(["a b", ""], [["a b"], ["c d"]]))
    assert values["rouge_l"] == pytest.approx(0.5)
    assert sorted(CaptionMetrics().names()) == sorted(values)


# --- the reader -----------------------------------------------------------------------------------


@pytest.fixture
def captions(tmp_path):
    return write_sports_captions(tmp_path / "sports")


def _datamodule(root, *overrides, modality="text_image"):
    cfg = compose(["data=sports_captions", f"data.root={root}", f"modality={modality}", *overrides])
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup()
    return dm


def test_reads_images_with_all_their_captions_and_a_recorded_split(captions):
    dm = _datamodule(captions, "data.train_on=first_caption")
    settings = dm.summary()["settings"]
    assert settings["images_assigned"] == {"train": 8, "val": 1, "test": 1}
    per_image = {s.id: s for split in dm.splits.values() for s in split}
    assert set(per_image) == set(CAPTIONS)
    assert all(per_image[name].labels == tuple(texts) for name, texts in CAPTIONS.items())  # spaces stripped
    assert per_image["1001773457.jpg"].labels[1] == 'A player in a "Bulldogs" jersey .'  # quotes are text
    counts = {split: sum(len(CAPTIONS[s.id]) for s in v) for split, v in dm.splits.items()}
    assert settings["captions_per_split"] == counts and sum(counts.values()) == 25
    assert {s: sorted(x.id for x in v) for s, v in dm.splits.items()} == settings["split_images"]
    assert all(s.text is None and s.image_path == captions / "images" / s.id for s in per_image.values())
    assert dm.summary()["train"]["label_counts"] == {}  # captions are not labels


def test_split_is_seeded_and_each_caption_trains_separately(captions):
    first = _datamodule(captions)
    again = _datamodule(captions)
    other = _datamodule(captions, "data.split_seed=1")
    images = first.summary()["settings"]["split_images"]
    assert images == again.summary()["settings"]["split_images"]
    assert images != other.summary()["settings"]["split_images"]
    train = first.splits["train"]
    assert len(train) == sum(len(CAPTIONS[name]) for name in images["train"])
    assert all(len(s.labels) == 1 for s in train) and len({s.id for s in train}) == len(train)
    assert first.task.longest_answer() == max((c for v in CAPTIONS.values() for c in v), key=len)


def test_text_only_captioning_is_refused(captions):
    with pytest.raises(Exception, match="modality=image"):
        _datamodule(captions, modality="text")


def _append(root, line):
    with (root / "results.csv").open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1002674143.jpg| 1 A girl runs .", "expected 3 pipe-separated fields"),
        ("1002674143.jpg| one| A girl runs .", "comment_number 'one'"),
        ("1002674143.jpg| 0| A girl again .", "duplicate comment_number 0"),
        ("1002674143.jpg| 1| ", "empty image_name or comment"),
    ],
)
def test_bad_lines_fail_naming_file_and_line(captions, line, message):
    _append(captions, line)
    with pytest.raises(BadSampleError, match=message) as err:
        _datamodule(captions)
    assert f"{captions}/results.csv:27:" in str(err.value)
    dm = _datamodule(captions, "data.on_bad_sample=skip")
    assert sum(r["samples_skipped"] for s, r in dm.summary().items() if s in dm.splits) == 1
    assert [s["source"] for s in dm.skipped()] == [f"{captions}/results.csv:27"]


def test_missing_image_fails_naming_its_first_line_and_skip_counts_it(captions):
    (captions / "images" / "1003163366.jpg").unlink()  # the 4th image: lines 8-12
    with pytest.raises(BadSampleError, match="image not found") as err:
        _datamodule(captions)
    assert f"{captions}/results.csv:8:" in str(err.value)
    dm = _datamodule(captions, "data.on_bad_sample=skip")
    assert [(s["source"], s["reason_kind"]) for s in dm.skipped()] == [(f"{captions}/results.csv:8", "image")]
    assert "1003163366.jpg" not in {s.id.split("#")[0] for v in dm.splits.values() for s in v}


def test_unusable_lines_do_not_move_the_split(captions):
    before = _datamodule(captions).summary()["settings"]["split_images"]
    _append(captions, "this line has no pipes at all")
    dm = _datamodule(captions, "data.on_bad_sample=skip")
    assert dm.summary()["settings"]["split_images"] == before
    assert [s["source"] for s in dm.skipped()] == [f"{captions}/results.csv:27"]
    assert dm.summary()["train"]["samples_skipped"] == 1


def test_wrong_header_is_an_error(captions):
    path = captions / "results.csv"
    path.write_text(path.read_text().replace("image_name| comment_number| comment", "image,caption"))
    with pytest.raises(BadSampleError, match="header"):
        _datamodule(captions)


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_then_evaluate_reproduces_the_metrics(tmp_path, tiny_qwen2vl):
    root, run = write_sports_captions(tmp_path / "sports"), tmp_path / "run"
    data = [f"data.root={root}", "data.split_fractions={train: 0.6, val: 0.2, test: 0.2}"]
    data += ["data.train_on=first_caption", "data.batch_size=3", "data.eval_batch_size=2"]
    run_args = ["model=qwen2vl_tiny", "trainer.max_steps=2", "logger=csv", f"hydra.run.dir={run}"]
    run_script("train.py", "data=sports_captions", *data, *run_args)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/bleu4", "test/rouge_l", "test/cider", "test/parse_failure_rate"} <= set(metrics)
    assert "val/cider_best" in metrics
    rows = [json.loads(line) for line in (run / "predictions/test.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["gold"] == CAPTIONS[row["id"]] for row in rows)
    candidates = [row["parsed"][0] if row["parse_ok"] else "" for row in rows]
    golds = [row["gold"] for row in rows]
    assert metrics["test/cider"] == pytest.approx(cider_d(candidates, golds), abs=1e-6)
    rouge = sum(rouge_l(c, g) for c, g in zip(candidates, golds, strict=True)) / 2
    assert metrics["test/rouge_l"] == pytest.approx(rouge, abs=1e-6)
    run_script("evaluate.py", f"run_dir={run}")
    (eval_dir,) = (run / "eval").iterdir()
    test_metrics = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert split_metrics(eval_dir / "metrics.json") == test_metrics
    assert (eval_dir / "predictions/test.jsonl").read_text() == (run / "predictions/test.jsonl").read_text()
