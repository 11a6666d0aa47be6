"""Saved directories and atomic files get the permissions open()/mkdir() give under the umask, not the
0600/0700 of the temporary files and folders they are staged in."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from mmlearn.checkpointing import save_directory_atomic
from mmlearn.io import write_atomic


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _modes(root):
    return {str(p.relative_to(root.parent)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def test_a_saved_directory_honours_the_umask(tmp_path, umask):
    def save(staging):
        save_file({"w": torch.zeros(2)}, staging / "adapter_model.safetensors")  # written 0600
        (staging / "sub").mkdir()
        (staging / "sub" / "notes.txt").write_text("x")

    save_directory_atomic(tmp_path / "adapter", save)
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    assert _modes(tmp_path / "adapter") == {
        "adapter": dir_mode,
        "adapter/adapter_model.safetensors": file_mode,
        "adapter/sub": dir_mode,
        "adapter/sub/notes.txt": file_mode,
    }


def test_an_atomic_file_honours_the_umask(tmp_path, umask):
    path = write_atomic(tmp_path / "metrics.json", "{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_built_tiny_preset_honours_the_umask(tmp_path, umask):
    """ModelSpec.ensure_local stages a tiny checkpoint in mkdtemp (0700) with safetensors (0600)."""
    from dataclasses import replace

    from hydra.utils import instantiate

    from tests.conftest import compose

    cfg = compose(["model=qwen2vl_tiny", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}"])
    spec = instantiate(cfg.model, _convert_="all")
    spec = replace(spec, pretrained=str(tmp_path / "models" / "qwen2vl_tiny"))
    spec.ensure_local()
    modes = _modes(tmp_path / "models" / "qwen2vl_tiny")
    assert "qwen2vl_tiny/model.safetensors" in modes
    assert set(modes.values()) <= {0o666 & ~umask, 0o777 & ~umask}, modes
