"""Config layers: every YAML fits its target's signature, every option composes, the real-model
command line composes offline."""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_object

from tests.conftest import CONF, REPO, compose

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra",))


def _targets(node, where):
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, node
        for key, value in node.items():
            yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def _accepted_arguments(target) -> set[str] | None:
    """Named arguments; a class whose __init__ passes **kwargs on to its base adds the base's."""
    classes = inspect.getmro(target) if inspect.isclass(target) else (target,)
    names: set[str] = set()
    for cls in classes:
        function = cls.__init__ if inspect.isclass(target) else cls
        params = inspect.signature(function).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names
    return None  # open-ended all the way down (e.g. a library class taking **kwargs)


def _yaml_files():
    files = sorted(CONF.rglob("*.yaml"))
    assert len(files) > 20
    return files


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(CONF)))
def test_yaml_keys_are_constructor_arguments(path):
    data = yaml.safe_load(path.read_text()) or {}
    for where, node in _targets(data, path.name):
        params = _accepted_arguments(get_object(node["_target_"]))
        if params is None:
            continue
        keys = {k for k in node if not k.startswith("_") and k != "defaults"}  # Hydra's, not the target's
        unknown = keys - params
        assert not unknown, f"{where}: {sorted(unknown)} are not arguments of {node['_target_']}"


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(group, option):
    config = "evaluate" if group == "backend" else "train"  # conf/backend is evaluate.yaml's group only
    cfg = compose(
        [f"{group}={option}", "paths.root_dir=/tmp/mmlearn-compose", "paths.output_dir=/tmp/out"], config
    )
    assert cfg[group] is not None if group not in ("experiment", "hparams_search") else True
    from omegaconf import OmegaConf

    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_evaluate_config_composes():
    cfg = compose(["run_dir=/tmp/some-run", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"], "evaluate")
    assert cfg.split == "test"


def test_real_model_command_composes_offline():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run(
        [
            sys.executable,
            "train.py",
            "model=qwen2vl",
            "data=mmhs150k",
            "peft=qlora",
            "--cfg",
            "job",
            "--resolve",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    job = yaml.safe_load(out.stdout)
    assert job["model"]["pretrained"] == "Qwen/Qwen2-VL-2B-Instruct"
    quant = job["peft"]["quantization"]
    assert (
        quant["load_in_4bit"] and quant["bnb_4bit_quant_type"] == "nf4" and quant["bnb_4bit_use_double_quant"]
    )
    assert quant["llm_int8_skip_modules"] == ["model.visual", "lm_head"]
    assert job["data"]["labels"] == ["racist", "sexist", "homophobe", "religion", "otherhate"]


def test_demo_experiment_only_lists_deltas():
    base = compose(["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
    demo = compose(["experiment=demo", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
    assert demo.optimizer.lr != base.optimizer.lr
    assert demo.model.name == base.model.name == "qwen2vl_tiny"
    assert Path(demo.data.root).name == "demo"
