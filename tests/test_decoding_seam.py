"""The decoding seam: decoders read a DecodingContext (model, processor, prompt format, task), never the
LightningModule; they are frozen dataclasses whose tuned thresholds make a new decoder; what they derive
from a context is memoised on it; runs recorded before `extra_new_tokens` moved still evaluate."""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import mmlearn.decoding as decoding
from mmlearn.decoding import DecodingContext, GenerateDecoder, ScoreDecoder, tunes_thresholds, with_thresholds
from mmlearn.evaluation.config import with_moved_settings
from mmlearn.tasks import MultiClassTask, MultiLabelTask
from tests.conftest import REPO, compose

DECODING = Path(REPO) / "mmlearn" / "decoding"
DECODERS = ("generate", "constrained", "score")


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _offenders(source: str) -> set[str]:
    """Imports of the LightningModule or of Lightning itself: a decoder must not need either."""
    return {
        n
        for n in _imports(source)
        if n == "mmlearn.module" or n.split(".")[0] in {"lightning", "pytorch_lightning"}
    }


def test_the_decoding_package_imports_neither_the_module_nor_lightning():
    found = {p.name: _offenders(p.read_text(encoding="utf-8")) for p in DECODING.glob("*.py")}
    assert not {name: names for name, names in found.items() if names}
    # the check itself catches an offender
    assert _offenders("from mmlearn.module import VLMFineTuner\nimport lightning as L") == {
        "mmlearn.module",
        "lightning",
    }


@pytest.mark.parametrize("name", DECODERS)
def test_decoders_are_frozen_dataclasses_decoding_a_context(name):
    decoder = instantiate(compose([f"decoding={name}", "paths.root_dir=/tmp/x"]).decoding)
    assert dataclasses.is_dataclass(decoder) and decoder.name == name
    params = list(inspect.signature(type(decoder).decode).parameters)
    assert params == ["self", "context", "batch"]
    field = dataclasses.fields(decoder)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(decoder, field, getattr(decoder, field))


def test_tuned_thresholds_make_a_new_decoder_and_leave_the_old_one_as_it_was():
    decoder = instantiate(compose(["decoding=score", "paths.root_dir=/tmp/x"]).decoding)
    assert isinstance(decoder.thresholds, type(None)) and tunes_thresholds(decoder)
    tuned = with_thresholds(decoder, {"red": 0.3, "blue": 0.7})
    assert tuned.thresholds == {"red": 0.3, "blue": 0.7} and decoder.thresholds is None
    assert dataclasses.replace(tuned, thresholds=None) == decoder
    assert tuned.label_thresholds(["blue", "red"]).tolist() == pytest.approx([0.7, 0.3])
    generate = instantiate(compose(["decoding=generate", "paths.root_dir=/tmp/x"]).decoding)
    assert not tunes_thresholds(generate)
    with pytest.raises(ValueError, match="decoding=generate predicts no per-label thresholds"):
        with_thresholds(generate, {"red": 0.5})


def test_hydra_settings_reach_the_decoder_as_plain_values():
    """`decoding.thresholds={...}` arrives as a DictConfig; the decoder keeps a plain dict."""
    cfg = compose(["decoding=score", "decoding.likelihood=full", "+decoding.thresholds={a: 0.2, b: 0.9}"])
    decoder = instantiate(cfg.decoding)
    assert type(decoder.thresholds) is dict and decoder.thresholds == {"a": 0.2, "b": 0.9}
    assert decoder.likelihood == "full"
    with pytest.raises(ValueError, match=r"decoding.thresholds must name exactly the labels \['a', 'c'\]"):
        decoder.check(MultiLabelTask(["a", "c"], "x"))


class _Prompt:
    def __init__(self):
        self.calls = 0

    def answer_ids(self, tokenizer, answer):
        self.calls += 1
        return [*range(len(answer)), 99]


def test_the_context_memoises_per_context_not_per_decoder():
    prompt = _Prompt()
    task = MultiClassTask(["cat", "giraffe"], "x")
    context = DecodingContext(model=None, processor="tok", prompt=prompt, task=task)
    assert context.tokenizer == "tok"  # a text model's tokenizer is its processor
    assert context.answer_budget == len("giraffe") + 1 and context.answer_budget == 8
    assert prompt.calls == 1
    assert GenerateDecoder(extra_new_tokens=3).max_new_tokens(context) == 11
    other = DecodingContext(model=None, processor="tok", prompt=prompt, task=MultiClassTask(["ox"], "x"))
    assert other.answer_budget == 3 and prompt.calls == 2
    with pytest.raises(ValueError, match="extra_new_tokens must be >= 0"):
        GenerateDecoder(extra_new_tokens=-1)


def test_the_generation_budget_lives_in_the_decoding_config():
    cfg = compose(["decoding=generate", "decoding.extra_new_tokens=9"])
    assert "extra_new_tokens" not in cfg and instantiate(cfg.decoding).extra_new_tokens == 9
    assert "extra_new_tokens" not in compose(["decoding=score"]).decoding


def test_a_run_recorded_before_the_budget_moved_keeps_its_budget():
    old = OmegaConf.create(
        {"seed": 1, "extra_new_tokens": 7, "decoding": {"_target_": "mmlearn.decoding.GenerateDecoder"}}
    )
    moved = with_moved_settings(old)
    assert "extra_new_tokens" not in moved and moved.decoding.extra_new_tokens == 7
    assert instantiate(moved.decoding) == GenerateDecoder(extra_new_tokens=7)
    scored = with_moved_settings(
        OmegaConf.create({"extra_new_tokens": 7, "decoding": {"_target_": "x.ScoreDecoder"}})
    )
    assert "extra_new_tokens" not in scored and "extra_new_tokens" not in scored.decoding
    assert with_moved_settings(moved) is moved  # nothing to move


def test_a_sports_captions_run_recorded_before_references_file_keeps_its_references():
    target = "mmlearn.data.datasets.sports_captions.SportsCaptionsDataModule"
    old = OmegaConf.create({"data": {"_target_": target, "captions_file": "/d/results.csv"}})
    moved = with_moved_settings(old)
    assert moved.data.references_file == "/d/results.csv" and "captions_file" not in moved.data
    assert with_moved_settings(moved) is moved


def test_the_package_exports_the_seam():
    assert {"DecodingContext", "generate_answers", "ScoreDecoder", "with_thresholds"} <= set(decoding.__all__)
    assert issubclass(ScoreDecoder, decoding.Decoder)
