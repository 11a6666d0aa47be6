"""evaluate.py run_dir=<run> ...: the run's config.yaml is the base and the command line applies on top
of it (groups, keys, and the values the run derived from a changed key); what a trained adapter fixes is
refused by name; evaluation directories are named by what they hold. Configs only: nothing is loaded."""

import pytest
from omegaconf import OmegaConf

from mmlearn.evaluation.command_line import read_command_line
from mmlearn.evaluation.rebase import evaluation_config
from mmlearn.resolvers import eval_name
from tests.conftest import compose


def _run(tmp_path, *overrides):
    """A run directory holding the config.yaml that `train.py <overrides>` records."""
    run = tmp_path / "run"
    cfg = compose([f"paths.root_dir={tmp_path}", f"paths.output_dir={run}", *overrides])
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
    return run


def _evaluated(run, *command_line):
    setup = [f"paths.root_dir={run.parent}", f"paths.output_dir={run}/eval/x"]  # MMLEARN_* in real use
    cfg = compose([*setup, f"run_dir={run}", *command_line], "evaluate")
    return evaluation_config(cfg, read_command_line([f"run_dir={run}", *command_line], cfg))


def test_the_command_line_reads_as_groups_keys_and_deletions():
    cfg = compose(["paths.root_dir=/tmp/x"], "evaluate")
    line = ["data=csv", "data.test_file=/a.csv", "+trainer.limit_test_batches=2", "~trainer.plugins"]
    command = read_command_line([*line, "split=val", 'hydra.run.dir="/a b"', "decoding=score"], cfg)
    assert command.groups == {"data", "decoding"}
    assert command.keys == {"data.test_file", "trainer.limit_test_batches", "split"}
    assert command.added == {"trainer.limit_test_batches"} and command.deleted == {"trainer.plugins"}
    assert command.under("data") == ["data", "data.test_file"]
    with pytest.raises(ValueError, match="package overrides"):
        read_command_line(["data@x=csv"], cfg)


def test_the_run_is_the_base_and_the_command_line_applies_on_top(tmp_path):
    run = _run(tmp_path, "data.root=/data/a", "decoding=score", "modality=text", "data.eval_batch_size=5")
    kept = _evaluated(run)
    assert kept.data.test_file == "/data/a/test.csv" and kept.data.eval_batch_size == 5
    assert kept.decoding._target_.endswith("ScoreDecoder")  # the run's decoder, not evaluate.yaml's
    assert kept.modality.name == kept.data.modality.name == "text"
    assert kept.split == "test" and kept.task_name == "evaluate" and kept.paths.output_dir.endswith("eval/x")

    moved = _evaluated(run, "data.root=/data/b")  # the files the demo derives from its root follow it
    assert (moved.data.train_file, moved.data.test_file) == ("/data/b/train.csv", "/data/b/test.csv")
    assert moved.data.image_root == moved.data.prepare.root == "/data/b"

    changed = _evaluated(run, "modality=text_image", "seed=7", "decoding=constrained", "trainer=ddp_sim")
    assert changed.data.modality.name == "text_image" and changed.data.seed == 7
    assert changed.decoding._target_.endswith("ConstrainedDecoder")
    assert changed.trainer.devices == 2 and changed.trainer.strategy.process_group_backend == "gloo"
    assert changed.trainer.default_root_dir == changed.paths.output_dir
    keys = _evaluated(run, "data.eval_batch_size=1", "trainer.precision=bf16-mixed")
    assert keys.data.eval_batch_size == 1 and keys.trainer.precision == "bf16-mixed"
    # a key that evaluate.yaml's own default option lacks: `+` tells Hydra (else it refuses the key)
    score = _evaluated(run, "+decoding.likelihood=full")
    assert score.decoding.likelihood == "full" and score.decoding.normalize == "sum"
    assert "plugins" in kept.trainer and "plugins" not in _evaluated(run, "~trainer.plugins").trainer


def test_a_value_the_run_set_itself_stays_when_what_it_would_derive_from_changes(tmp_path):
    run = _run(tmp_path, "data.root=/data/a", "data.test_file=/elsewhere/t.csv")
    moved = _evaluated(run, "data.root=/data/b")
    assert moved.data.test_file == "/elsewhere/t.csv" and moved.data.val_file == "/data/b/val.csv"


def test_a_setting_under_the_old_root_that_cannot_follow_is_named(tmp_path):
    """The experiment's captions_file is derived from data.root outside the data option file."""
    run = _run(tmp_path, "experiment=perceptsent/p3_mllama_qlora", "data.root=/data/ps")
    with pytest.raises(ValueError, match=r"run's data.captions_file lie under it"):
        _evaluated(run, "data.root=/data/new")
    moved = _evaluated(run, "data.root=/data/new", "+data.captions_file=/data/new/captions.csv")
    assert moved.data.dataset_file == "/data/new/dataset.json"


def test_a_group_on_the_command_line_replaces_the_runs_and_needs_its_mandatory_values(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(ValueError, match=r"data.image_root, data.train_file, data.val_file must be set"):
        _evaluated(run, "data=csv", "data.test_file=/x/test.csv", "data.labels_file=/x/labels.txt")
    files = ["data.test_file=/x/t.csv", "data.labels_file=/x/l.txt", "data.image_root=/x"]
    other = _evaluated(run, "data=csv", *files, "data.train_file=null", "data.val_file=null")
    assert other.data.name == "csv" and other.data.test_file == "/x/t.csv"
    assert other.data.modality == other.modality and other.data.seed == other.seed


def test_a_key_the_runs_data_does_not_have_is_an_error_not_ignored(tmp_path):
    run = _run(tmp_path, "data=hateful_memes")
    with pytest.raises(ValueError, match=r"the run's data config \(hateful_memes\) has no data.test_file"):
        _evaluated(run, "data.test_file=/x.csv")


@pytest.mark.parametrize(
    ("command_line", "message"),
    [
        (["peft.towers.vision=lora"], r"peft.towers.vision cannot change"),
        (["peft=lora", "peft.adapter.r=4"], r"peft, peft.adapter.r cannot change"),
        (["peft=qlora"], r"peft cannot change"),
        (["model.pretrained=/elsewhere"], r"model.pretrained cannot change"),
        (["model=smolvlm_tiny"], r"model.family cannot change .* trained on 'qwen2vl'.*would load 'smolvlm'"),
        (["model=qwen2vl"], r"model.pretrained cannot change .* would load 'Qwen/Qwen2-VL-2B-Instruct'"),
        (
            ["paths.cache_dir=/elsewhere"],
            r"pretrained cannot change .*\(paths.cache_dir\) would load '/elsewhere/",
        ),
    ],
)
def test_what_the_adapter_was_trained_with_is_refused_by_name(tmp_path, command_line, message):
    run = _run(tmp_path)
    with pytest.raises(ValueError, match=message):
        _evaluated(run, *command_line)


def test_the_dtype_changes_only_when_the_command_line_sets_it(tmp_path):
    run = _run(tmp_path, "model.torch_dtype=bfloat16")
    with pytest.raises(ValueError, match=r"\(model\) would load the model in float32 .* trained in bfloat16"):
        _evaluated(run, "model=qwen2vl_tiny")  # the option's own dtype would slip in
    assert _evaluated(run, "model=qwen2vl_tiny", "model.torch_dtype=float32").model.torch_dtype == "float32"
    assert _evaluated(run).model.torch_dtype == "bfloat16"


def test_evaluation_directories_are_named_by_what_they_hold(tmp_path):
    assert eval_name("test", "score", 2, None) == "test-score-2shot"
    assert eval_name("val", "generate", 0, 1) == "val-generate-1shot-per-class"
    assert eval_name("predict", "constrained", 0, None) == "predict-constrained"
    run = _run(tmp_path, "decoding=score")
    assert eval_name("test", "generate", 0, None, str(run), []) == "test-score"  # the run's decoder
    assert eval_name("test", "constrained", 0, None, str(run), ["decoding=constrained"]) == "test-constrained"
    assert eval_name("test", "generate", 0, None, str(tmp_path / "nothing"), []) == "test-generate"
