"""Shared fixtures: a tiny Qwen2-VL built once per session, and the demo data, both offline; and the
helpers that compose configs and run the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# the text encoders' presets (head=linear|nli only: no image, no generation), left out of the VLM invariants
TEXT_ENCODER_PRESETS = ("bart_tiny", "distilbert_tiny", "modernbert_tiny")


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    os.environ.setdefault("MMLEARN_CACHE_DIR", str(cache))
    os.environ.setdefault("MMLEARN_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    yield


@pytest.fixture(scope="session")
def tiny_qwen2vl(offline_env) -> Path:
    from mmlearn.models.tiny import build_preset

    path = Path(os.environ["MMLEARN_CACHE_DIR"]) / "models" / "qwen2vl_tiny"
    if not (path / "config.json").is_file():
        build_preset("qwen2vl_tiny", path)
    return path


@pytest.fixture(scope="session")
def demo_dir(offline_env) -> Path:
    from mmlearn.data.demo import build_demo

    return build_demo(
        Path(os.environ["MMLEARN_DATA_DIR"]) / "demo_small",
        splits={"train": 16, "val": 8, "test": 8},
        image_size=56,
        seed=0,
    )


def compose(overrides: list[str], config_name: str = "train"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return hydra_compose(config_name, overrides=overrides, return_hydra_config=False)


WALL_CLOCK = ("/seconds", "/samples_per_second")


def split_metrics(path, split: str = "test") -> dict:
    """A metrics.json's `<split>/` metrics without the wall-clock figures, which no rerun reproduces."""
    import json

    metrics = json.loads(Path(path).read_text())
    return {k: v for k, v in metrics.items() if k.startswith(f"{split}/") and not k.endswith(WALL_CLOCK)}


def run_script(script: str, *overrides: str, check: bool = True, timeout: int = 900):
    """An entry point (train.py, evaluate.py, compare.py, ...) in a fresh interpreter, as a user runs it;
    with `check`, a failure shows the tail of its output."""
    out = subprocess.run(
        [sys.executable, script, *overrides], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def train_demo_run(tmp_path_factory, demo_dir) -> Path:
    """A trained run to evaluate, serve or predict with: two LoRA steps of the tiny Qwen2-VL on the small
    demo split, through train.py as a user runs it, in a folder of its own (tests write eval/ into it)."""
    run_dir = tmp_path_factory.mktemp("run") / "demo"
    run_script(
        "train.py",
        "logger=csv",
        "trainer.max_steps=2",
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        "data.batch_size=4",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir


def chat_prompt(**changes):
    """The chat-template prompt as conf/model/qwen2vl.yaml configures it (its values live there only)."""
    from hydra.utils import instantiate

    return instantiate(compose(["paths.root_dir=/tmp/mmlearn-prompt"]).model.prompt, **changes)
