"""What the up-front image check costs: per image and for a folder of 10,000.

    python benchmarks/image_check_cost.py --out image_check_cost.json [--images 10000] [--size 640x480]

Writes `--images` photo-like JPEGs (smooth gradients plus noise, quality 90, 64 distinct pictures
cycled over distinct files) to a temporary folder, then times over every file, one after the other:
`verify` (the old header-only check, which a truncated JPEG passes), `check_image` (the check a split is
read with: header, pixel limit, full decode of the data, JPEGs at 1/8 scale) and `load_rgb` (the decode
and conversion every epoch does anyway for each image it batches). `check_vs_one_epoch_of_loading` is
check time over load time: the check costs less than the image loading of a single epoch, itself a
small part of an epoch that also runs the model on every sample.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mmlearn.data.images import ImageRules, check_image, load_rgb

RULES = ImageRules(max_pixels=40_000_000, background=(255, 255, 255))


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    colour = rng.uniform(0, 255, (1, 1, 3)) * x + rng.uniform(0, 255, (1, 1, 3)) * y
    pixels = np.clip(colour / 2 + rng.normal(0, 12, (height, width, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def write_folder(folder: Path, images: int, width: int, height: int) -> list[Path]:
    distinct = []
    for seed in range(min(64, images)):
        path = folder / f"base_{seed}.jpg"
        photo_like(width, height, seed).save(path, "JPEG", quality=90)
        distinct.append(path.read_bytes())
    paths = []
    for index in range(images):
        path = folder / f"{index:05d}.jpg"
        path.write_bytes(distinct[index % len(distinct)])
        paths.append(path)
    return paths


def verify(path: Path) -> None:
    with Image.open(path) as img:
        img.verify()


def timed(function, paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        function(path)
    return time.perf_counter() - start


def measure(images: int, width: int, height: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_folder(Path(tmp), images, width, height)
        timed(verify, paths[:64])  # warm the page cache and Pillow's plugins
        seconds = {
            "verify": timed(verify, paths),
            "check_image": timed(lambda p: check_image(p, RULES), paths),
            "load_rgb": timed(lambda p: load_rgb(p, RULES), paths),
        }
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
    return {
        "images": images,
        "size": f"{width}x{height}",
        "folder_mb": round(megabytes, 1),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "ms_per_image": {k: round(1000 * v / images, 3) for k, v in seconds.items()},
        "seconds_per_10k_images": {k: round(v * 10_000 / images, 1) for k, v in seconds.items()},
        "check_vs_one_epoch_of_loading": round(seconds["check_image"] / seconds["load_rgb"], 3),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of each JPEG")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    result = measure(args.images, width, height)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
