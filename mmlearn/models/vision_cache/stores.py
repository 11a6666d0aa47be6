"""Where features are kept: CPU memory or one safetensors file per image on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _to_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A compact CPU copy that owns its storage (a slice would keep the whole batch's output alive)."""
    return torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor.detach())


class MemoryStore:
    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.data: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str) -> torch.Tensor | None:
        return self.data.get(key)

    def put(self, key: str, tensor: torch.Tensor) -> bool:
        if key in self.data:
            return True
        if self.max_bytes is not None and self.bytes + _nbytes(tensor) > self.max_bytes:
            return False
        self.data[key] = _to_cpu(tensor)
        self.bytes += _nbytes(tensor)
        return True


class DiskStore:
    """One safetensors file per image under `directory/<2 hex>/<key>.safetensors`, written atomically
    (processes sharing the directory never read a half-written file). The size limit counts what the
    directory already holds when the run starts."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int | None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        files = list(self.directory.glob("*/*.safetensors"))
        self.bytes = sum(f.stat().st_size for f in files)
        self.count = len(files)

    def __len__(self) -> int:
        return self.count

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        path = self._path(key)
        return load_file(path)["features"] if path.is_file() else None

    def put(self, key: str, tensor: torch.Tensor) -> bool:
        path = self._path(key)
        if path.is_file():
            return True
        if self.max_bytes is not None and self.bytes + _nbytes(tensor) > self.max_bytes:
            return False
        path.parent.mkdir(exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{key}.", dir=path.parent)
        os.close(handle)
        try:
            save_file({"features": _to_cpu(tensor)}, staging)
            os.replace(staging, path)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
        self.bytes += path.stat().st_size
        self.count += 1
        return True
