"""Seed 002 on a small copy of its layout: LLaVA's ScienceQA training files (long QCM-LEA answers, short,
realigned; full and mini) train the tiny LLaVA, which is scored on problems.json's questions asked as the
files ask them, by the letter of the last "The answer is X."; the six experiment files compose and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from mmlearn.data.conversations import ConversationSample
from mmlearn.decoding import GenerateDecoder
from mmlearn.decoding.context import DecodingContext
from mmlearn.tasks.multiple_choice import parse_letter
from tests import layouts_conversations as lc
from tests.conftest import CONF, compose, run_script

SIX = ["full_origin", "full_short", "full_realign", "mini_origin", "mini_short", "mini_realign"]
ON_A_LAPTOP = ["model=llava_tiny", "trainer=cpu", "trainer.devices=1", "paths.root_dir=/tmp/mmlearn-sqa-conv"]


@pytest.fixture(scope="module")
def seed002(tmp_path_factory) -> Path:
    return lc.write_seed002(tmp_path_factory.mktemp("scienceqa"))


def datamodule(root: Path, experiment: str, *overrides: str):
    cfg = compose([f"experiment=scienceqa/{experiment}", f"data.root={root}", *ON_A_LAPTOP, *overrides])
    module = instantiate(cfg.data)
    module.setup()
    return cfg, module


def test_the_six_files_and_the_tiny_counterpart_exist():
    found = sorted(p.stem for p in (CONF / "experiment" / "scienceqa").glob("*.yaml"))
    assert set(SIX) | {"tiny_origin"} <= set(found)


@pytest.mark.parametrize("experiment", SIX)
def test_each_experiment_carries_the_seed_recipe(experiment):
    cfg = compose([f"experiment=scienceqa/{experiment}", "paths.root_dir=/tmp/mmlearn-sqa-conv"])
    file, pid_list = {
        "full_origin": ("llava_train_QCM-LEA.json", "train"),
        "full_short": ("llava_train_short.json", "train"),
        "full_realign": ("llava_train_realigned_v4.json", "train"),
        "mini_origin": ("llava_minitrain_QCM-LEA.json", "minitrain"),
        "mini_short": ("llava_minitrain_short.json", "minitrain"),
        "mini_realign": ("llava_minitrain_realigned_2.json", "minitrain"),
    }[experiment]
    assert cfg.data.train_file == f"{cfg.data.root}/{file}" and cfg.data.splits.train == pid_list
    assert (cfg.model.name, cfg.peft.name, cfg.peft.towers.vision, cfg.peft.towers.language) == (
        "llava",
        "none",
        "frozen",
        "full",
    )
    assert cfg.optimizer.lr == 2e-5 and cfg.scheduler._target_.endswith("get_cosine_schedule_with_warmup")
    assert cfg.trainer.max_epochs == 12 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.batch_size * cfg.trainer.accumulate_grad_batches * cfg.trainer.devices == 256
    assert cfg.data.max_length == 1024
    strategy = cfg.trainer.strategy
    assert strategy.stage == 3 and strategy.offload_optimizer and strategy.offload_parameters
    steps = -(-12 * (12726 if pid_list == "train" else 1000) // 256)  # 3% warmup of the run's steps
    assert cfg.scheduler.num_warmup_steps in (int(0.03 * steps), int(0.03 * steps) + 1)
    assert (cfg.data.prompt_style, cfg.data.instruction, cfg.data.splits.test) == ("llava", "", "test")


def test_the_questions_are_asked_as_the_training_file_asks_them(seed002):
    """problems.json's questions, asked with prompt_style=llava, are exactly the training file's user turns
    (text, and the image slot after it): the model is scored on the prompt it was trained on."""
    _, train = datamodule(seed002, "mini_origin", "data.splits.val=minitrain", "data.splits.test=train")
    from_file = {s.id: s for s in train.splits["train"]}
    asked = {s.id: s for s in train.splits["val"]}
    assert set(asked) == set(from_file) == {"1", "3", "5"}
    for pid, sample in asked.items():
        assert isinstance(sample, ConversationSample)
        assert sample.turns[0] == from_file[pid].turns[0], pid
        assert sample.images == from_file[pid].images
    long_answer = from_file["1"].labels[0]
    assert len(long_answer) > 120 and long_answer.endswith("The answer is A.")
    assert parse_letter(long_answer) == "A"


def test_the_generation_budget_is_the_configured_max_new_tokens(seed002):
    _, module = datamodule(seed002, "tiny_origin", "data.max_new_tokens=77")
    context = DecodingContext(model=None, processor=None, prompt=None, task=module.task)
    assert context.answer_budget == 77
    assert GenerateDecoder(extra_new_tokens=4).max_new_tokens(context) == 81


@pytest.mark.slow
def test_the_tiny_llava_trains_on_the_long_answers_and_is_scored_by_the_answer_letter(seed002, tmp_path):
    from mmlearn.training import train

    cfg = compose(
        [
            "experiment=scienceqa/tiny_origin",
            f"data.root={seed002}",
            "trainer.max_steps=3",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            "paths.root_dir=/tmp/mmlearn-sqa-conv",
            f"paths.output_dir={tmp_path / 'run'}",
        ]
    )
    metrics = train(cfg)
    assert set(metrics) >= {
        "test/accuracy",
        "test/accuracy_with_image",
        "test/accuracy_without_image",
        "test/parse_failure_rate",
    }
    records = [json.loads(x) for x in (tmp_path / "run/predictions/test.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["11", "12", "13", "14"]
    for record in records:  # what the parser read, or a counted failure
        assert record["parsed"] == ([parse_letter(record["output"])] if record["parse_ok"] else None)
    failures = sum(not r["parse_ok"] for r in records) / len(records)
    assert metrics["test/parse_failure_rate"] == pytest.approx(failures)
    summary = json.loads((tmp_path / "run/data_summary.json").read_text())
    assert summary["settings"]["prompt_style"] == "llava" and summary["train"]["file"].endswith(
        "llava_minitrain_QCM-LEA.json"
    )


@pytest.mark.slow
@pytest.mark.parametrize("experiment", SIX)
def test_each_experiment_runs_a_step_on_the_copy(seed002, tmp_path, experiment):
    from mmlearn.training import train

    cfg = compose(
        [
            f"experiment=scienceqa/{experiment}",
            f"data.root={seed002}",
            *ON_A_LAPTOP,
            "data.max_new_tokens=4",
            "data.batch_size=2",
            "trainer.max_steps=1",
            "trainer.max_epochs=1",
            "trainer.accumulate_grad_batches=1",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            f"paths.output_dir={tmp_path / 'run'}",
        ]
    )
    assert "test/accuracy" in train(cfg)


@pytest.mark.slow
def test_a_run_trained_on_a_conversation_file_is_scored_on_scienceqa(seed002, tmp_path):
    """data=conversations on LLaVA's file, then evaluate.py run_dir=... data=scienceqa_llava: the same
    scoring as the seed (problems.json's test questions, the answer letter, with and without image)."""
    from mmlearn.training import train

    file = seed002 / "llava_minitrain_QCM-LEA.json"
    run = tmp_path / "run"
    train(
        compose(
            [
                "data=conversations",
                "model=llava_tiny",
                "peft=none",
                f"data.train_file={file}",
                f"data.val_file={file}",
                f"data.test_file={file}",
                f"data.image_root={seed002}/images/train",
                "data.max_new_tokens=8",
                "trainer.max_steps=2",
                "trainer.enable_progress_bar=false",
                "logger=csv",
                "paths.root_dir=/tmp/mmlearn-sqa-conv",
                f"paths.output_dir={run}",
            ]
        )
    )
    out = run_script(
        "evaluate.py",
        f"run_dir={run}",
        "data=scienceqa_llava",
        f"data.root={seed002}",
        "data.max_new_tokens=8",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert {"test/accuracy", "test/accuracy_with_image", "test/parse_failure_rate"} <= set(metrics), (
        out.stdout[-2000:]
    )
    records = [json.loads(x) for x in (tmp_path / "eval/predictions/test.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["11", "12", "13", "14"]
