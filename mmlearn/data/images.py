"""Image loading: every file arrives as an upright RGB PIL image, or fails naming itself.

An image is either a file (`Path`) or a row of an Arrow dataset (`ArrowImageRef`), read only when the
loader asks for it.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError


class ImageLoadError(ValueError):
    pass


class ArrowImageRef:
    """One image inside a memory-mapped `datasets.Dataset`: pickles as the Arrow file's path, so
    DataLoader workers read (and decode) only the rows they batch. The dataset must hold just the image
    column, undecoded (`Image(decode=False)`, binary bytes or a path string)."""

    def __init__(self, dataset, index: int, base_dir: Path | None = None) -> None:
        self.dataset = dataset
        self.index = int(index)
        self.base_dir = base_dir

    @property
    def _key(self) -> tuple:
        return (self.dataset._fingerprint, self.index)

    def __eq__(self, other) -> bool:
        return isinstance(other, ArrowImageRef) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        files = [c["filename"] for c in self.dataset.cache_files] or ["<in memory>"]
        return f"ArrowImageRef({files[0]}, row {self.index})"

    def open(self) -> io.BytesIO | Path:
        (value,) = self.dataset[self.index].values()
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
        else:
            data, path = (value, None) if isinstance(value, bytes) else (None, value)
        if data:
            return io.BytesIO(data)
        if path:
            path = Path(path)
            return path if path.is_absolute() or self.base_dir is None else self.base_dir / path
        raise ImageLoadError(f"{self}: no image (neither bytes nor a path)")


def _source(image: Path | ArrowImageRef) -> io.BytesIO | Path:
    return image.open() if isinstance(image, ArrowImageRef) else image


def check_image(image: Path | ArrowImageRef) -> None:
    """Cheap header check used while reading a split (the full decode happens in the loader)."""
    source = _source(image)
    if isinstance(source, Path) and not source.is_file():
        raise ImageLoadError(f"image not found: {source}")
    try:
        with Image.open(source) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageLoadError(f"unreadable image {image}: {err}") from err


def load_rgb(image: Path | ArrowImageRef) -> Image.Image:
    try:
        with Image.open(_source(image)) as img:
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageLoadError(f"unreadable image {image}: {err}") from err
