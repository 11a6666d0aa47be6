"""Property-style: a seeded generator throws random bytes, truncations and header corruptions at the
image check and loader and at the table reader. Never an exception of another type than the ones that
name the input; never a silent success on data that is corrupt."""

import io
import random

import numpy as np
import pytest
from PIL import Image

from mmlearn.data.images import ImageLoadError, ImageRules, check_image, load_rgb
from mmlearn.data.modality import Modality
from mmlearn.data.policy import InputPolicy
from mmlearn.data.sample import BadSampleError
from mmlearn.data.table_reader import TableReader

RULES = ImageRules(max_pixels=1_000_000, background=(255, 255, 255))
FORMATS = {
    "PNG": {},
    "JPEG": {"quality": 90},
    "GIF": {},
    "BMP": {},
    "TIFF": {"compression": "tiff_lzw"},
    "WEBP": {},
}
CASES = 25


def _image_bytes(fmt: str, seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, fmt, **FORMATS[fmt])
    return buffer.getvalue()


def _outcome(path) -> str:
    """'ok' or 'refused'; any other exception fails the test."""
    try:
        check_image(path, RULES)
    except ImageLoadError as err:
        assert str(path) in str(err)
        return "refused"
    image = load_rgb(path, RULES)  # what passed the check loads
    assert image.mode == "RGB" and image.width * image.height >= 1
    return "ok"


def test_random_bytes_are_never_an_image(tmp_path):
    rng = random.Random(17)
    for case in range(CASES * 4):
        path = tmp_path / f"r{case}.png"
        path.write_bytes(rng.randbytes(rng.randrange(0, 3000)))
        assert _outcome(path) == "refused", case


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_truncated_image_never_passes(tmp_path, fmt):
    rng = random.Random(fmt)
    data = _image_bytes(fmt, 0)
    for case in range(CASES):
        cut = rng.randrange(1, len(data) * 9 // 10)  # some pixel data is always lost
        path = tmp_path / f"t{case}.{fmt.lower()}"
        path.write_bytes(data[:cut])
        assert _outcome(path) == "refused", (fmt, cut, len(data))
        with pytest.raises(ImageLoadError):
            load_rgb(path, RULES)  # the loader refuses it too, should it be reached mid-run


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_corrupted_header_is_refused_or_loads_as_an_image(tmp_path, fmt):
    rng = random.Random(f"header-{fmt}")
    data = _image_bytes(fmt, 1)
    outcomes = set()
    for case in range(CASES * 2):
        corrupt = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            corrupt[rng.randrange(0, 48)] = rng.randrange(256)
        path = tmp_path / f"h{case}.{fmt.lower()}"
        path.write_bytes(bytes(corrupt))
        outcomes.add(_outcome(path))
    assert "refused" in outcomes  # the corruptions reached the decoder, and it noticed


# --- the table reader ------------------------------------------------------------------------------

LABELS = ["red", "blue"]
ROWS = [
    ("r1", "a sunny day", "img/a.png", "red"),
    ("r2", "café au lait", "img/b.png", "blue"),
    ("r3", "quoted, with comma", "img/a.png", "red,blue"),
    ("r4", "plain", "img/b.png", ""),
    ("r5", "naïve", "img/a.png", "blue"),
]
# bytes that can never appear in UTF-8 text, alone or in any position
INVALID_UTF8 = [0xC0, 0xC1, 0xF5, 0xF8, 0xFE, 0xFF, 0x80, 0xBF]


@pytest.fixture
def table_root(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "img" / f"{name}.png")
    return tmp_path


def _csv_bytes() -> bytes:
    lines = ["id,text,image_path,labels"] + [f'{i},"{t}",{p},"{labels}"' for i, t, p, labels in ROWS]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _original(root) -> set:
    return {(i, t, root / p, tuple(x for x in labels.split(",") if x)) for i, t, p, labels in ROWS}


def _read(root, data: bytes, mode: str):
    path = root / "split.csv"
    path.write_bytes(data)
    inputs = InputPolicy.from_config(
        on_bad_sample=mode, encoding="utf-8-sig", max_image_pixels=1_000_000, image_background=[0, 0, 0]
    )
    reader = TableReader(
        image_root=root, labels=LABELS, task="multilabel", modality=Modality("text_image"), inputs=inputs
    )
    try:
        samples, report = reader.read(path)
    except BadSampleError as err:
        assert str(path) in str(err)
        return None, None
    return {(s.id, s.text, s.image_path, s.labels) for s in samples}, report


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_the_table_reader_never_keeps_a_corrupted_row(table_root, mode):
    rng = random.Random(f"table-{mode}")
    original, clean = _original(table_root), _csv_bytes()
    assert _read(table_root, clean, mode)[0] == original
    for case in range(CASES * 4):
        kind = case % 3
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 400))
        elif kind == 1:
            data = clean[: rng.randrange(0, len(clean))]
        else:
            data = bytearray(clean)
            where = rng.randrange(0, len(data))
            data[where:where] = bytes([rng.choice(INVALID_UTF8)])
            data = bytes(data)
        kept, report = _read(table_root, data, mode)
        if kept is None:
            continue  # refused, naming the file
        altered = kept - original
        # the one cut no reader can see: right after a separator of the last row, which then reads as a
        # well-formed row of a file written without a final newline
        assert not altered or (kind == 1 and data.endswith(b",") and len(altered) == 1), (case, data)
        if kind == 2:
            assert report.skipped, (case, data)  # the row with the byte is skipped, never kept
