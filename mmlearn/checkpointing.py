"""Checkpoints and saved models that are either complete or absent, never half-written.

Lightning's `TorchCheckpointIO` serialises into memory, writes a temporary file in `$TMPDIR` and
`shutil.move`s it into place: a rename on the same filesystem, but a plain copy onto NFS, Lustre or a
container volume, where a crash mid-copy leaves a truncated `last.ckpt` that the next resume trips on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mmlearn.io import default_mode, normalise_modes


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes the checkpoint to a temporary file beside its target, then renames it over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, default_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def save_directory_atomic(directory: str | Path, save: Callable[[Path], None]) -> Path:
    """`save(staging)` fills a sibling staging directory, which then takes the final name in one rename;
    every file and folder in it gets the permissions of the rest of the run (not mkdtemp's 0700 or
    safetensors' 0600).

    A directory cannot be renamed over a non-empty one, so an existing target is first moved aside and
    removed only after the new one is in place: a crash leaves either the old or the new directory.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.staging.", dir=directory.parent))
    try:
        save(staging)
        normalise_modes(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old.{os.getpid()}")
        os.replace(directory, old)
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory
