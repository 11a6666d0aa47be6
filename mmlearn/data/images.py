"""Image loading: every file arrives as an upright RGB PIL image, or fails naming itself."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError


class ImageLoadError(ValueError):
    pass


def check_image(path: Path) -> None:
    """Cheap header check used while reading a split (the full decode happens in the loader)."""
    if not path.is_file():
        raise ImageLoadError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageLoadError(f"unreadable image {path}: {err}") from err


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageLoadError(f"unreadable image {path}: {err}") from err
