"""Heads, unit by unit: pooling on either padding side, class weights and the weighted losses against
a hand computation, the head decoder's answers and thresholds, the configs, and head=nli's scores on
the tiny BART checked by hand on one sample."""

import dataclasses
import json
import math

import pytest
import torch

from mmlearn.decoding import tunes_thresholds, with_thresholds
from mmlearn.heads.classifier import prompt_only
from mmlearn.heads.decoder import HeadDecoder
from mmlearn.heads.loss import class_counts, class_weights, head_loss
from mmlearn.heads.nli import nli_probs
from mmlearn.heads.pooling import pool
from mmlearn.models.prompting import IGNORE_INDEX
from mmlearn.sample import Sample
from mmlearn.tasks import MultiClassTask, MultiLabelTask
from tests.conftest import compose, run_script
from tests.heads_data import TEXT_CUES, csv_overrides, write_table

LABELS = ["a", "b", "c"]


def test_pooling_reads_the_same_tokens_left_or_right_padded():
    torch.manual_seed(0)
    tokens = torch.randn(2, 3, 4)  # two sequences of 3 real tokens
    right = torch.cat([tokens, torch.zeros(2, 2, 4)], dim=1)
    left = torch.cat([torch.zeros(2, 2, 4), tokens], dim=1)
    right_mask = torch.tensor([[1, 1, 1, 0, 0]] * 2)
    left_mask = torch.tensor([[0, 0, 1, 1, 1]] * 2)
    for how, expected in (("last", tokens[:, -1]), ("cls", tokens[:, 0]), ("mean", tokens.mean(dim=1))):
        assert torch.allclose(pool(right, right_mask, how), expected), how
        assert torch.allclose(pool(left, left_mask, how), expected), how
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool(right, right_mask, "max")


def test_training_inputs_hide_the_answer_from_the_head():
    inputs = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0]]),
        "labels": torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8, IGNORE_INDEX]]),
    }
    out = prompt_only(inputs)
    assert "labels" not in out and out["attention_mask"].tolist() == [[1, 1, 0, 0, 0]]


def _samples(label_rows):
    return [Sample(id=str(i), text="t", image_path=None, labels=tuple(r)) for i, r in enumerate(label_rows)]


def test_class_weights_by_hand():
    task = MultiClassTask(LABELS, "{labels}")
    samples = _samples([["a"], ["a"], ["b"], ["c"], ["c"], ["c"]])
    counts = class_counts(task, samples)
    assert counts.tolist() == [2, 1, 3]
    assert class_weights("inverse", counts, LABELS, 6).tolist() == pytest.approx([1 / 2, 1, 1 / 3])
    assert class_weights("balanced", counts, LABELS, 6).tolist() == pytest.approx([6 / 6, 6 / 3, 6 / 9])
    assert class_weights(None, counts, LABELS, 6) is None
    with pytest.raises(ValueError, match=r"labels \['b'\] have no training sample"):
        class_weights("inverse", torch.tensor([2, 0, 1]), LABELS, 3)


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0]])
    target = torch.tensor([0, 2, 1])
    weights = torch.tensor([0.5, 1.0, 1 / 3])
    nll = [
        -math.log(math.exp(row[t]) / sum(math.exp(x) for x in row))
        for row, t in zip(logits.tolist(), target, strict=True)
    ]
    w = [weights[t].item() for t in target]
    expected = sum(wi * li for wi, li in zip(w, nll, strict=True)) / sum(w)
    assert head_loss(logits, target, "multiclass", weights).item() == pytest.approx(expected, rel=1e-6)
    assert head_loss(logits, target, "multiclass", None).item() == pytest.approx(sum(nll) / 3, rel=1e-6)


def test_weighted_binary_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.8, 0.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    weights = torch.tensor([2.0, 1.0, 0.25])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    entries = [
        -weights[k].item() * (y * math.log(sig(x)) + (1 - y) * math.log(1 - sig(x)))
        for row, gold in zip(logits.tolist(), target.tolist(), strict=True)
        for k, (x, y) in enumerate(zip(row, gold, strict=True))
    ]
    assert head_loss(logits, target, "multilabel", weights).item() == pytest.approx(
        sum(entries) / 6, rel=1e-6
    )


class _Logits:
    device = torch.device("cpu")

    def __init__(self, logits):
        self._logits = logits

    def logits(self, inputs):
        return self._logits


def _context(task, logits):
    from mmlearn.decoding.context import DecodingContext

    return DecodingContext(_Logits(logits), None, None, task)


def test_head_decoder_multiclass_probabilities_and_argmax():
    task = MultiClassTask(LABELS, "{labels}")
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    decoded = HeadDecoder(threshold=0.5, thresholds=None).decode(_context(task, logits), {"inputs": {}})
    assert [d.parsed.labels for d in decoded] == [("b",), ("a",)]
    assert [d.output for d in decoded] == ["b", "a"]
    probs = logits.softmax(dim=-1)
    for d, row in zip(decoded, probs.tolist(), strict=True):
        assert list(d.scores.values()) == pytest.approx(row)
    assert all(d.parsed.ok for d in decoded)


def test_head_decoder_multilabel_thresholds():
    task = MultiLabelTask(LABELS, "{labels}")
    logits = torch.tensor([[0.5, -0.2, 2.0]])  # sigmoids 0.62, 0.45, 0.88
    decoder = HeadDecoder(threshold=0.5, thresholds=None)
    assert tunes_thresholds(decoder)
    (d,) = decoder.decode(_context(task, logits), {"inputs": {}})
    assert d.parsed.labels == ("a", "c") and json.loads(d.output) == ["a", "c"]
    tuned = with_thresholds(decoder, {"a": 0.7, "b": 0.4, "c": 0.5})
    assert dataclasses.is_dataclass(tuned) and decoder.thresholds is None
    (d,) = tuned.decode(_context(task, logits), {"inputs": {}})
    assert d.parsed.labels == ("b", "c")
    with pytest.raises(ValueError, match="must name exactly the labels"):
        HeadDecoder(threshold=0.5, thresholds={"a": 0.1}).check(task)


def test_nli_probabilities_by_hand():
    grid = torch.tensor([[[1.0, 0.0, 2.0], [0.5, 0.0, -1.0]]])  # (sample, label, contra/neutral/entail)
    multiclass = nli_probs(grid, entail=2, contra=0, kind="multiclass")
    assert multiclass.tolist()[0] == pytest.approx(
        [math.exp(2) / (math.exp(2) + math.exp(-1)), math.exp(-1) / (math.exp(2) + math.exp(-1))]
    )
    multilabel = nli_probs(grid, entail=2, contra=0, kind="multilabel")
    assert multilabel.tolist()[0] == pytest.approx(
        [math.exp(2) / (math.exp(1) + math.exp(2)), math.exp(-1) / (math.exp(0.5) + math.exp(-1))]
    )


def _cfg(*overrides):
    return compose(["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/out", *overrides])


def test_head_options_compose_and_generate_is_the_default():
    assert _cfg().head.name == "generate"
    linear = _cfg("head=linear", "model=distilbert_tiny")
    assert linear.head.decoder._target_ == "mmlearn.heads.HeadDecoder" and linear.model.pooling == "cls"
    assert _cfg("head=nli", "model=bart_tiny").head.decoder.hypothesis == "This text is about {label}."
    assert compose(["paths.root_dir=/tmp/x", "head=nli"], "evaluate").head.name == "nli"


def test_a_text_encoder_refuses_to_generate(tmp_path):
    from mmlearn.heads.building import refuse_generation
    from mmlearn.heads.text_encoders import TextEncoderPrompt

    spec = type("S", (), {})()
    refuse_generation(spec)  # a VLM spec: nothing to refuse
    with pytest.raises(ValueError, match="use modality=text"):
        TextEncoderPrompt(16).encode(None, ["x"], [["an image"]])
    out = run_script(
        "train.py", "model=distilbert_tiny", "modality=text", f"hydra.run.dir={tmp_path}", check=False
    )
    assert out.returncode != 0 and "is a text encoder: it answers through a head" in out.stderr


@pytest.fixture(scope="module")
def nli_eval(tmp_path_factory):
    root = write_table(tmp_path_factory.mktemp("nli_data"), "text", {"train": 3, "val": 3, "test": 6})
    out = tmp_path_factory.mktemp("nli") / "eval"
    run_script(
        "evaluate.py",
        "model=bart_tiny",
        "head=nli",
        "modality=text",
        *csv_overrides(root, list(TEXT_CUES)),
        f"hydra.run.dir={out}",
    )
    return root, out


def test_zero_shot_nli_runs_and_its_scores_are_entailment_softmaxes(nli_eval):
    """One sample by hand: the tiny BART-MNLI's logits of (text, "This text is about <label>.") for each
    label, softmaxed over the labels' entailment logits."""
    import os

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root, out = nli_eval
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test/parse_failure_rate"] == 0.0 and "test/accuracy" in metrics
    rows = [json.loads(line) for line in (out / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(set(r["scores"]) == set(TEXT_CUES) for r in rows)
    text = next(line.split(",")[1] for line in (root / "test.csv").read_text().splitlines()[1:2])
    path = os.path.join(os.environ["MMLEARN_CACHE_DIR"], "models", "bart_tiny")
    tokenizer, model = (
        AutoTokenizer.from_pretrained(path),
        AutoModelForSequenceClassification.from_pretrained(path),
    )
    entail = model.config.label2id["entailment"]
    with torch.no_grad():
        logits = [
            model(**tokenizer(text, f"This text is about {label}.", return_tensors="pt")).logits[0, entail]
            for label in TEXT_CUES
        ]
    expected = torch.stack(logits).softmax(dim=0).tolist()
    assert [rows[0]["scores"][label] for label in TEXT_CUES] == pytest.approx(expected, abs=1e-5)
    assert rows[0]["parsed"] == [list(TEXT_CUES)[int(torch.tensor(expected).argmax())]]


def test_class_balanced_sampling_draws_every_class_about_equally():
    from collections import Counter

    from mmlearn.data.sampling import ClassBalancedSampler

    labels = [("a",)] * 80 + [("b",)] * 15 + [("c",)] * 5  # 80 / 15 / 5
    sampler = ClassBalancedSampler(range(100), labels, seed=3)
    draws = [i for _ in range(50) for i in (sampler.set_epoch(_) or list(sampler))]
    shares = Counter(labels[i][0] for i in draws)
    assert all(abs(shares[k] / len(draws) - 1 / 3) < 0.03 for k in "abc"), shares
    sampler.set_epoch(7)
    assert list(sampler) == list(sampler) and len(list(sampler)) == 100  # seeded by (seed, epoch)
    multi = ClassBalancedSampler(range(3), [("a", "b"), ("a",), ()], seed=0)
    assert multi.weights.tolist() == [1.0, 1.0, 1.0]  # rarest label b, a and the no-label group: one each


def test_class_balanced_sampling_is_a_data_loader_setting():
    cfg = _cfg("data.class_balanced=true")
    assert cfg.data.class_balanced is True
    from hydra.utils import instantiate

    with pytest.raises(Exception, match="cannot both be on"):  # Hydra wraps the ValueError
        instantiate(_cfg("data.class_balanced=true", "data.group_by_length=true").data, _convert_="all")


@pytest.mark.parametrize("problem", ["p3", "p5"])
def test_seed_003_caption_experiments_carry_the_seed_values(problem):
    paths = ["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/x/out"]
    full = compose([f"experiment=perceptsent/{problem}_caption_modernbert_full", *paths])
    head_only = compose([f"experiment=perceptsent/{problem}_caption_bart_head", *paths])
    llama = compose([f"experiment=perceptsent/{problem}_caption_llama_qlora", *paths])
    for cfg in (full, head_only):
        assert cfg.head.name == "linear" and cfg.head.loss.class_weights == "inverse"
        assert cfg.optimizer.weight_decay == pytest.approx(1e-6) and cfg.optimizer.lr == pytest.approx(1e-5)
        assert cfg.callbacks.early_stopping.patience == 10 and cfg.data.batch_size == 8
        assert cfg.model.prompt.max_length == 512 and cfg.data.problem == problem.upper()
    assert dict(full.peft.towers) == {"vision": "frozen", "projector": "frozen", "language": "full"}
    assert set(head_only.peft.towers.values()) == {"frozen"}  # the head alone trains
    assert llama.head.name == "generate" and llama.peft.name == "qlora"
    assert (llama.peft.adapter.r, llama.peft.adapter.lora_alpha, llama.peft.adapter.lora_dropout) == (
        32,
        8,
        0.1,
    )
    assert llama.optimizer.lr == pytest.approx(2e-4) and llama.callbacks.early_stopping.patience == 10
