"""Image loading: every file arrives as an upright RGB PIL image, or fails naming itself.

An image is either a file (`Path`) or a row of an Arrow dataset (`ArrowImageRef`), read only when the
loader asks for it. `check_image` runs while a split is read: it refuses an image over the pixel limit
from its header alone (nothing is allocated) and decodes the rest, so a truncated or corrupt file is
caught before training; `load_rgb` decodes again when a batch needs the pixels.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageOps

from mmlearn.compat.datasets import dataset_fingerprint
from mmlearn.data.image_modes import to_rgb
from mmlearn.data.paths import under_root
from mmlearn.data.sample import BadSampleError

# what Pillow raises for a file it cannot decode (UnidentifiedImageError and PyCMSError are OSErrors)
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
    Image.DecompressionBombError,
)


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
        return (dataset_fingerprint(self.dataset), self.index)

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
            if self.base_dir is None:
                return Path(path)
            try:
                return under_root(self.base_dir, path)
            except BadSampleError as err:
                raise ImageLoadError(f"{self}: {err}") from err
        raise ImageLoadError(f"{self}: no image (neither bytes nor a path)")


class BytesImage:
    """An image that arrived as bytes (a request body, an upload), read through the same checks and
    conversion as a file; `name` says where it came from in messages (e.g. `items[2].image`)."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = bytes(data)
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.data)


@dataclass(frozen=True)
class ImageRules:
    """data.max_image_pixels (None: Pillow's own limit) and data.image_background."""

    max_pixels: int | None
    background: tuple[int, int, int]

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"data.max_image_pixels must be null or positive, got {self.max_pixels}")
        if len(self.background) != 3 or not all(0 <= int(c) <= 255 for c in self.background):
            raise ValueError(f"data.image_background must be 3 values in 0..255, got {self.background}")


def _source(image: Path | ArrowImageRef | BytesImage) -> io.BytesIO | Path:
    source = image.open() if isinstance(image, ArrowImageRef | BytesImage) else image
    if isinstance(source, Path) and not source.is_file():
        raise ImageLoadError(f"image not found: {source}")
    return source


def _open(image: Path | ArrowImageRef, rules: ImageRules) -> Image.Image:
    """Opens the header only, and refuses an image over the limit before any pixel is decoded."""
    img = Image.open(_source(image))
    pixels = img.width * img.height
    if rules.max_pixels is not None and pixels > rules.max_pixels:
        img.close()
        raise ImageLoadError(
            f"image {image} is {img.width}x{img.height} = {pixels} pixels, over "
            f"data.max_image_pixels={rules.max_pixels} (refused before decoding)"
        )
    return img


def check_image(image: Path | ArrowImageRef, rules: ImageRules) -> None:
    """Decodes the whole image (JPEGs at 1/8 scale: every byte is still read and checked) so that a
    truncated or corrupt file fails here, while the split is read, and not in a training batch."""
    try:
        with _open(image, rules) as img:
            img.draft(None, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            if img.mode == "CMYK" and img.info.get("icc_profile"):
                ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
    except ImageLoadError:
        raise
    except DECODE_ERRORS as err:
        raise ImageLoadError(f"unreadable image {image}: {err}") from err


# for callers outside a run's data config (a report's thumbnail): Pillow's own limit, on white
OUTSIDE_A_RUN = ImageRules(max_pixels=None, background=(255, 255, 255))


def load_rgb(image: Path | ArrowImageRef, rules: ImageRules = OUTSIDE_A_RUN) -> Image.Image:
    """A run's loader passes its data config's rules."""
    try:
        with _open(image, rules) as img:
            return to_rgb(ImageOps.exif_transpose(img), rules.background)
    except ImageLoadError:
        raise
    except DECODE_ERRORS as err:
        raise ImageLoadError(f"unreadable image {image}: {err}") from err
