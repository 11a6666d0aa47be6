"""The package stands on its own: the built wheel carries its configs (`mmlearn.conf`) and the `mmlearn`
command, which trains, evaluates and composes a real model's config from an empty directory in a
fresh virtualenv outside the checkout; nothing in mmlearn/ reaches into the repository."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONF, REPO

# what the wheel is built from (a copy: an in-tree build would leave build/ in the checkout)
WHEEL_SOURCES = ("pyproject.toml", "README.md", "mmlearn", "conf")
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
}
SMALL = ["trainer.max_steps=2", "data.prepare.splits={train: 8, val: 4, test: 4}"]


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_pyproject_lists_every_package():
    sources = {p.parent for p in (REPO / "mmlearn").rglob("*.py") if "__pycache__" not in p.parts}
    found = {".".join(d.relative_to(REPO).parts) for d in sources} | {"mmlearn.conf"}
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    assert not found - listed, f"pyproject.toml [tool.setuptools] packages lacks {sorted(found - listed)}"
    assert not listed - found, f"pyproject.toml lists packages that do not exist: {sorted(listed - found)}"


def test_the_editable_install_finds_the_checkouts_configs():
    from mmlearn import conf_dir

    assert conf_dir() == CONF


def test_without_an_install_the_configs_error_says_how_to_install(monkeypatch):
    import importlib.metadata
    import importlib.util

    from mmlearn import conf_dir

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModuleNotFoundError, match=r"mmlearn\.conf.*pip install -e \."):
        conf_dir.__wrapped__()


def _climbs_out(source: Path) -> list[str]:
    """`Path(__file__)` chains that climb above mmlearn/ (into the repository)."""
    depth = len(source.relative_to(REPO).parts) - 1  # folders between the repository and the file
    found = []
    chain = r"Path\(__file__\)(?:\.resolve\(\))?((?:\.parent\b)+|\.parents\[(\d+)\])"
    for match in re.finditer(chain, source.read_text()):
        levels = int(match.group(2)) + 1 if match.group(2) else match.group(1).count(".parent")
        if levels >= depth + 1:
            found.append(f"{source.relative_to(REPO)}: {match.group(0)}")
    return found


def test_nothing_in_the_package_reaches_into_the_repository():
    sources = sorted((REPO / "mmlearn").rglob("*.py"))
    assert len(sources) > 20
    assert [hit for source in sources for hit in _climbs_out(source)] == []
    scripts = sorted(p for folder in ("sweep", "benchmarks") for p in (REPO / folder).rglob("*.py"))
    assert [str(p.relative_to(REPO)) for p in scripts if "sys.path" in p.read_text()] == []


def test_mmlearn_help_lists_every_sub_command(capsys):
    from mmlearn.cli import COMMANDS, main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert {"train", "evaluate", "compare", "export"} <= set(COMMANDS)
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(command.summary)}$", out, re.M), name


def test_an_unknown_sub_command_names_the_choices(capsys):
    from mmlearn.cli import COMMANDS, main

    with pytest.raises(SystemExit) as done:
        main(["trian", "experiment=demo"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"unknown sub-command 'trian'; choose from {', '.join(COMMANDS)} (did you mean train?)" in err


def test_a_sub_command_gets_the_rest_of_the_command_line(monkeypatch):
    import types

    import mmlearn.cli

    seen, fake = [], types.ModuleType("fake_sub_command")
    fake.command = lambda: seen.append(list(sys.argv))
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(mmlearn.cli.COMMANDS, "echo", mmlearn.cli.Command(fake.__name__, "a test"))
    monkeypatch.setattr(sys, "argv", ["mmlearn"])
    mmlearn.cli.main(["echo", "-m", "a=1,2", "--cfg", "job"])
    assert seen == [["mmlearn echo", "-m", "a=1,2", "--cfg", "job"]]


def test_every_sub_command_module_has_a_command():
    import importlib

    from mmlearn.cli import COMMANDS

    for name, command in COMMANDS.items():
        assert callable(importlib.import_module(command.module).command), name


# --- the built wheel in a fresh virtualenv -------------------------------------------------------------


def _run(args: list[str], cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _build_wheel(tmp: Path) -> Path:
    pytest.importorskip("setuptools", minversion="77")  # builds offline (--no-build-isolation)
    source = tmp / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        ignore = {"ignore": shutil.ignore_patterns("__pycache__", "*.pyc")} if (REPO / name).is_dir() else {}
        copy(REPO / name, source / name, **ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(source)], tmp, {**os.environ})  # fmt: skip
    (wheel,) = (tmp / "dist").glob("mmlearn_vlm-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> tuple[Path, Path]:
    """A virtualenv holding only the wheel, then pointed (a .pth) at the suite's site-packages for the
    dependencies: the suite's editable mmlearn is not among them (its own .pth is not read there)."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, {**os.environ})
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    _run([*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp, {**os.environ})
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp, {}).stdout.strip())  # fmt: skip
    suite = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib")])
    (purelib / "_suite_dependencies.pth").write_text("".join(f"{p}\n" for p in suite if Path(p).is_dir()))
    return venv, purelib


def _user_env(venv: Path) -> dict:
    """A user's shell with the venv activated: no MMLEARN_* (paths default under the cwd), no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMLEARN_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, **OFFLINE, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    venv, purelib = _fresh_venv(tmp, wheel)
    package = purelib / "mmlearn"
    modes = {p: p.stat().st_mode for p in [package, *package.rglob("*")]}
    for path in modes:  # read-only, as a system-wide install may be: nothing is written into the package
        path.chmod(path.stat().st_mode & ~0o222)
    yield wheel, venv, package
    for path, mode in modes.items():
        path.chmod(mode)


@pytest.mark.slow
def test_the_wheel_ships_the_configs_and_the_command(installed):
    import zipfile

    wheel, venv, package = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml")}
    assert {f"mmlearn/conf/{p}" for p in shipped} <= names
    assert "mmlearn/conf/__init__.py" in names
    code = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "mmlearn").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert not code - names, f"the wheel lacks {sorted(code - names)}"
    assert not any(n.startswith(("tests/", "conf/", "benchmarks/", "sweep/")) for n in names)
    where = _run([str(venv / "bin" / "python"), "-c", "import mmlearn; print(mmlearn.__file__); print(mmlearn.conf_dir())"],
                 venv, _user_env(venv)).stdout.split()  # fmt: skip
    assert [Path(p).resolve() for p in where] == [
        (package / "__init__.py").resolve(),
        (package / "conf").resolve(),
    ]


@pytest.mark.slow
def test_the_command_trains_evaluates_and_composes_from_an_empty_directory(installed, tmp_path):
    _, venv, package = installed
    env, mmlearn = _user_env(venv), str(venv / "bin" / "mmlearn")
    shipped = _files(package)  # read-only above, but root may write anyway: nothing may appear there
    out = _run([mmlearn, "train", "--help"], tmp_path, env, timeout=120).stdout
    assert (
        out.startswith("mmlearn train.py: LoRA / QLoRA fine-tuning")
        and "\nmodality: image, text, text_image\n" in out
    )
    failed = subprocess.run(
        [mmlearn, "compare"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert failed.returncode != 0 and "modes.fine_tuned.run_dir must be set" in failed.stderr  # the hints

    _run([mmlearn, "train", "experiment=demo", *SMALL], tmp_path, env, timeout=600)
    (adapter,) = (tmp_path / "runs" / "train").glob("*/*/adapter/adapter_config.json")
    run = adapter.parent.parent
    assert (run / "metrics.json").is_file()
    assert (tmp_path / ".cache" / "mmlearn" / "models" / "qwen2vl_tiny" / "config.json").is_file()
    assert (tmp_path / "data" / "demo" / "train.csv").is_file()

    _run([mmlearn, "evaluate", f"run_dir={run}"], tmp_path, env, timeout=300)
    (metrics,) = (run / "eval").glob("*/metrics.json")
    assert "test/f1_macro" in metrics.read_text()

    composed = _run([mmlearn, "train", "model=qwen2vl", "data=mmhs150k", "peft=qlora", "--cfg", "job"], tmp_path, env).stdout  # fmt: skip
    cfg = yaml.safe_load(composed)
    assert (
        cfg["model"]["pretrained"]
        == yaml.safe_load((CONF / "model" / "qwen2vl.yaml").read_text())["pretrained"]
    )
    assert cfg["peft"]["quantization"]["load_in_4bit"] is True
    assert _files(package) == shipped


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if "__pycache__" not in p.parts}
