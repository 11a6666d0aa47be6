"""Mistakes fail fast with the fix in the message: the option or key meant, every `???` at once before
torch is imported, the setting that points at a missing dataset or an unreachable checkpoint."""

import os
import subprocess
import sys

import pytest

from mmlearn.cli_errors import MissingValues, closest, explained
from tests.conftest import REPO, compose, run_script

PATHS = ["paths.root_dir=/tmp/mmlearn-cli", "paths.output_dir=/tmp/mmlearn-cli/out"]


def test_closest_takes_initials_and_spellings():
    assert closest("learning_rate", ["lr", "weight_decay", "_target_"]) == ["lr"]
    assert closest("qwen2-vl", ["qwen2vl", "llava", "smolvlm"])[0] == "qwen2vl"
    assert closest("zzz", ["lr", "weight_decay"]) == []


@pytest.mark.parametrize(
    ("override", "hydra_says", "we_say"),
    [
        ("optimizer.learning_rate=1e-3", "Could not override 'optimizer.learning_rate'", "did you mean optimizer.lr?"),
        ("model=qwen2-vl", "Could not find 'model/qwen2-vl'", "did you mean model=qwen2vl"),
        ("data.lables=[a]", "Could not override 'data.lables'", "did you mean data.labels?"),
        ("extra_new_tokens=8", "Could not override 'extra_new_tokens'", "extra_new_tokens moved: it is decoding.extra_new_tokens now"),
    ],
)  # fmt: skip
def test_an_unknown_key_or_option_names_what_was_meant(tmp_path, override, hydra_says, we_say):
    out = run_script("train.py", override, f"hydra.run.dir={tmp_path}", check=False, timeout=120)
    assert out.returncode != 0
    assert hydra_says in out.stderr and we_say in out.stderr, out.stderr[-2000:]


def test_every_missing_value_is_named_before_torch_is_imported(tmp_path):
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "train.py", "data=csv", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "data.train_file, data.val_file, data.test_file, data.image_root must be set" in out.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "import time:" in line}
    assert "torch" not in imported and "mmlearn.training" not in imported


def test_missing_values_are_all_named_at_once():
    cfg = compose([*PATHS, "data=csv", "model.pretrained=???"])
    with (
        pytest.raises(
            MissingValues, match=r"data\.train_file, .*data\.image_root, model\.pretrained must be set"
        ),
        explained(cfg),
    ):
        pass


def test_export_without_a_run_names_run_dir():
    out = run_script("export.py", check=False, timeout=120)
    assert out.returncode != 0 and "mmlearn: run_dir must be set" in out.stderr


def test_a_missing_dataset_names_data_root_and_the_files_it_reads(tmp_path):
    from mmlearn.building import build_datamodule

    cfg = compose([*PATHS, "data=mmhs150k", f"data.root={tmp_path / 'mmhs150k'}"])
    with pytest.raises(FileNotFoundError) as error, explained(cfg):
        build_datamodule(cfg)
    (note,) = error.value.__notes__
    assert f"data.root={tmp_path / 'mmhs150k'}" in note and "MMLEARN_DATA_DIR" in note
    assert "gt_file=MMHS150K_GT.json" in note and "image_dir=img_resized" in note


OFFLINE = """
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from mmlearn.cli_errors import explained
with initialize_config_dir(version_base="1.3", config_dir="{conf}"):
    cfg = compose("train", overrides=["model=qwen2vl", "paths.root_dir=/tmp/x"])
with explained(cfg):
    instantiate(cfg.model).load_processor()
"""


def test_a_checkpoint_not_in_the_offline_cache_names_model_pretrained(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path), HF_HUB_CACHE=str(tmp_path / "hub"))
    out = subprocess.run(
        [sys.executable, "-c", OFFLINE.format(conf=REPO / "conf")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode != 0
    assert "mmlearn: model.pretrained=Qwen/Qwen2-VL-2B-Instruct could not be loaded" in out.stderr
    assert "model.pretrained=<local dir>" in out.stderr


def test_a_hint_never_replaces_the_error():
    cfg = compose(PATHS)
    with pytest.raises(OSError, match=r"^disk on fire$") as error, explained(cfg):
        raise OSError("disk on fire")
    assert not getattr(error.value, "__notes__", None)
