"""What a newcomer types first: compare.py without a fine-tuned run fails naming the key,
data=sports100 alone composes an image-only run, and --help is a short usage."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, compose, run_script

PATHS = ["paths.root_dir=/tmp/mmlearn-entry", "paths.output_dir=/tmp/mmlearn-entry/out"]


def test_compare_without_a_run_dir_fails_before_loading_anything(tmp_path):
    out = run_script("compare.py", f"hydra.run.dir={tmp_path}", check=False, timeout=300)
    assert out.returncode != 0
    assert "modes.fine_tuned.run_dir must be set" in out.stderr
    assert "~modes.fine_tuned" in out.stderr
    assert "mode zero_shot" not in out.stdout + out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "compare.log"]  # no mode evaluated


def test_every_missing_mode_value_is_named_at_once():
    from mmlearn.comparison.run import check_modes

    cfg = compose([*PATHS, "+modes.other={run_dir: ???}"], "compare")
    with pytest.raises(
        ValueError, match=r"modes\.fine_tuned\.run_dir, modes\.other\.run_dir must be set"
    ) as e:
        check_modes(cfg)
    assert str(e.value).endswith("~modes.fine_tuned ~modes.other")


def test_compare_modes_with_a_run_dir_or_without_the_mode(tmp_path):
    from mmlearn.comparison.run import mode_configs

    cfg = compose([*PATHS, "modes.fine_tuned.run_dir=/runs/a"], "compare")
    configs = mode_configs(cfg, tmp_path)
    assert {name: c.run_dir for name, c in configs.items()} == {
        "zero_shot": None,
        "two_shot": None,
        "fine_tuned": "/runs/a",
    }
    assert list(mode_configs(compose([*PATHS, "~modes.fine_tuned"], "compare"), tmp_path)) == [
        "zero_shot",
        "two_shot",
    ]


@pytest.mark.parametrize("config", ["train", "evaluate"])
def test_sports100_alone_is_image_only(config):
    assert compose([*PATHS, "data=sports100"], config).data.modality.name == "image"
    assert compose([*PATHS, "data=sports100", "modality=text"], config).data.modality.name == "text"
    assert compose([*PATHS], config).data.modality.name == "text_image"


def test_an_experiment_still_sets_the_modality_of_sports100():
    cfg = compose([*PATHS, "experiment=crisismmd/informative_text", "data=sports100"])
    assert cfg.data.modality.name == "text"


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "compare.py"])
def test_help_is_a_short_usage_with_the_groups_and_examples(script):
    out = run_script(script, "--help", timeout=120).stdout
    assert out.startswith(f"mmlearn {script}: LoRA / QLoRA fine-tuning")
    assert "python train.py -m experiment=demo peft.adapter.r=4,8" in out
    assert "\nmodality: image, text, text_image\n" in out
    assert "sports100" in out.split("Config groups")[1]
    assert f'eval "$(python {script} -sc install=bash)"' in out
    assert "optimized_metric" not in out and "_target_" not in out  # not Hydra's config dump
    assert len(out.splitlines()) < 60


def test_the_documented_tab_completion_installs_in_bash():
    # `python` as the README's user has it: the environment running the suite (.venv, or CI's .venv-ci)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run(
        ["bash", "-c", 'eval "$(python train.py -sc install=bash)" && complete -p python'],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "hydra_bash_completion" in out.stdout
