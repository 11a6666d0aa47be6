"""Any Pillow mode to the 8-bit RGB a processor gets, keeping what the pixels mean.

Pillow's own `convert("RGB")` clips 16-bit, 32-bit and float grayscale at 255 (a 16-bit scan comes out
white), drops alpha (transparent pixels show whatever colour they hide) and converts CMYK without its
ICC profile. Here: 16-bit grayscale is scaled by its bit depth, 32-bit integer and float grayscale (which
carry none) by the image's own min..max, transparency is composited on the configured background, and
CMYK goes through its embedded profile to sRGB where it has one.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _grey_to_8bit(img: Image.Image) -> Image.Image:
    values = np.asarray(img).astype(np.float64)
    if img.mode in SIXTEEN_BIT:
        low, high = 0.0, 65535.0
    else:
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    grey = np.clip(np.nan_to_num(values - low, nan=0.0) * scale, 0, 255)
    return Image.fromarray(np.rint(grey).astype(np.uint8), mode="L").convert("RGB")


def _on_background(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if not icc:
        return img.convert("RGB")
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")


def to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Raises OSError/ValueError (ImageCms.PyCMSError is an OSError) for what cannot be converted."""
    if img.mode in (*SIXTEEN_BIT, "I", "F"):
        return _grey_to_8bit(img)
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        return _on_background(img, background)
    if img.mode == "CMYK":
        return _cmyk_to_rgb(img)
    return img.convert("RGB")
