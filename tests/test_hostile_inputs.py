"""Issue 17's hostile inputs to data=csv, each in both modes: a BOM, bytes that are not UTF-8, a truncated
JPEG, decompression bombs, a path that climbs out of data.image_root, and an image that breaks after the
split was read. Each loads faithfully or stops the run naming file:row; with data.on_bad_sample=skip it
is skipped and counted."""

import io
import struct
import zlib

import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image, ImageFile

from mmlearn.data.sample import BadSampleError
from tests.conftest import compose

MODES = ("error", "skip")


def _datamodule(root, *overrides, mode="error"):
    cfg = compose(
        [
            "data=csv",
            "paths.root_dir=/tmp/mmlearn-hostile",
            f"data.train_file={root / 'train.csv'}",
            "data.val_file=null",
            "data.test_file=null",
            f"data.image_root={root}",
            "data.labels=[red,blue]",
            f"data.on_bad_sample={mode}",
            *overrides,
        ]
    )
    return instantiate(cfg.data, _convert_="all")


def _read(root, *overrides, mode="error"):
    datamodule = _datamodule(root, *overrides, mode=mode)
    datamodule.setup()
    return datamodule


def _noise(size=(48, 32), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def root(tmp_path):
    (tmp_path / "img").mkdir()
    _noise().save(tmp_path / "img" / "ok.png")
    return tmp_path


def _table(root, body: bytes, header: bytes = b"text,image_path,labels\n") -> None:
    (root / "train.csv").write_bytes(header + body)


def _expect_named(root, mode, row: int, match: str, *overrides):
    """error: the run stops naming file:row; skip: that row is skipped and counted, the good row kept."""
    source = f"{root / 'train.csv'}:{row}"
    if mode == "error":
        with pytest.raises(BadSampleError, match=match) as err:
            _read(root, *overrides)
        assert source in str(err.value)
        return None
    datamodule = _read(root, *overrides, mode="skip")
    summary = datamodule.summary()["train"]
    assert (summary["samples_kept"], summary["samples_skipped"]) == (1, 1)
    (skipped,) = datamodule.skipped()
    assert skipped["source"] == source and match.split("|")[0].lower() in skipped["reason"].lower()
    return datamodule


# --- text files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_bom_before_an_id_first_column_keeps_the_ids(root, mode):
    text = "id,text,image_path,labels\nt-1,hello,img/ok.png,red\nt-2,bye,img/ok.png,blue\n"
    (root / "train.csv").write_text(text, encoding="utf-8-sig")
    datamodule = _read(root, mode=mode)
    assert [s.id for s in datamodule.splits["train"]] == ["t-1", "t-2"]
    assert [s.text for s in datamodule.splits["train"]] == ["hello", "bye"]


@pytest.mark.parametrize("mode", MODES)
def test_a_bom_before_a_text_first_column_reads(root, mode):
    (root / "train.csv").write_text("text,image_path,labels\nhello,img/ok.png,red\n", encoding="utf-8-sig")
    (sample,) = _read(root, mode=mode).splits["train"]
    assert (sample.text, sample.labels) == ("hello", ("red",))


def test_a_bom_is_not_part_of_the_first_column_under_plain_utf8_either(root):
    (root / "train.csv").write_text(
        "id,text,image_path,labels\nt-1,hi,img/ok.png,red\n", encoding="utf-8-sig"
    )
    (sample,) = _read(root, "data.encoding=utf-8").splits["train"]
    assert sample.id == "t-1"


@pytest.mark.parametrize("mode", MODES)
def test_bytes_that_are_not_utf8_name_the_row(root, mode):
    _table(root, b"fine,img/ok.png,red\ncaf\xe9 au lait,img/ok.png,blue\n")
    _expect_named(root, mode, 3, "byte 0xe9")


def test_data_encoding_reads_a_latin1_file(root):
    _table(root, b"caf\xe9,img/ok.png,red\n")
    (sample,) = _read(root, "data.encoding=latin-1").splits["train"]
    assert sample.text == "café"


def test_an_unknown_encoding_is_refused_by_name(root):
    _table(root, b"hi,img/ok.png,red\n")
    with pytest.raises(InstantiationException, match=r"data\.encoding='klingon'"):
        _datamodule(root, "data.encoding=klingon")


@pytest.mark.parametrize("mode", MODES)
def test_a_jsonl_line_with_bad_bytes_names_its_line(root, mode):
    good = b'{"text": "fine", "image_path": "img/ok.png", "labels": ["red"]}\n'
    bad = b'{"text": "caf\xe9", "image_path": "img/ok.png", "labels": ["red"]}\n'
    (root / "train.jsonl").write_bytes(good + bad)
    overrides = [f"data.train_file={root / 'train.jsonl'}"]
    if mode == "error":
        with pytest.raises(BadSampleError, match="byte 0xe9") as err:
            _read(root, *overrides)
        assert f"{root / 'train.jsonl'}:2" in str(err.value)
    else:
        datamodule = _read(root, *overrides, mode="skip")
        assert [s.text for s in datamodule.splits["train"]] == ["fine"]
        assert datamodule.skipped()[0]["source"] == f"{root / 'train.jsonl'}:2"


# --- images caught by the up-front check ------------------------------------------------------------


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    _noise((64, 64)).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])


@pytest.mark.parametrize("mode", MODES)
def test_a_truncated_jpeg_is_caught_while_the_split_is_read(root, mode):
    _truncated_jpeg(root / "img" / "cut.jpg")
    _table(root, b"fine,img/ok.png,red\ncut,img/cut.jpg,blue\n")
    _expect_named(root, mode, 3, "truncated")


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares width x height but carries one row of data: what a bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture
def never_decoded(monkeypatch):
    """Fails the test if any image's pixels are decoded."""

    def load(self):
        raise AssertionError(f"decoded {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("side", [30000, 12000])
def test_a_decompression_bomb_is_refused_by_name_before_decoding(root, mode, side, monkeypatch):
    _png_header_only(root / "img" / "bomb.png", side, side)
    _table(root, b"fine,img/ok.png,red\nbomb,img/bomb.png,blue\n")
    real_load = ImageFile.ImageFile.load

    def load(self):
        assert self.size != (side, side), "the bomb was decoded"
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    _expect_named(root, mode, 3, "pixels|DecompressionBomb|max_image_pixels")


def test_the_pixel_limit_is_data_max_image_pixels(root, never_decoded):
    _png_header_only(root / "img" / "wide.png", 100, 50)
    _table(root, b"wide,img/wide.png,red\n")
    with pytest.raises(BadSampleError, match=r"over data\.max_image_pixels=4999"):
        _read(root, "data.max_image_pixels=4999")


# --- paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_relative_path_climbing_out_of_the_image_root_is_refused(root, mode):
    data = root / "data"
    (data / "img").mkdir(parents=True)
    _noise().save(data / "img" / "ok.png")
    _noise().save(root / "outside.png")
    (data / "train.csv").write_text("text,image_path,labels\nfine,img/ok.png,red\nout,../outside.png,blue\n")
    overrides = [f"data.train_file={data / 'train.csv'}", f"data.image_root={data}"]
    if mode == "error":
        with pytest.raises(BadSampleError, match="climbs out") as err:
            _read(data, *overrides)
        assert f"{data / 'train.csv'}:3" in str(err.value)
    else:
        datamodule = _read(data, *overrides, mode="skip")
        assert [s.text for s in datamodule.splits["train"]] == ["fine"]
        assert "climbs out" in datamodule.skipped()[0]["reason"]


def test_absolute_paths_and_symlinked_folders_stay_allowed(root, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _noise().save(elsewhere / "far.png")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    _table(
        root,
        f"abs,{elsewhere / 'far.png'},red\nlink,linked/far.png,blue\ninner,img/../img/ok.png,red\n".encode(),
    )
    samples = _read(root).splits["train"]
    assert [s.image_path for s in samples] == [
        elsewhere / "far.png",
        root / "linked/far.png",
        root / "img/../img/ok.png",
    ]


# --- an image that breaks after the split was read ---------------------------------------------------


class _CountingFormat:
    """Stands in for a model's prompt format: records what each batch would encode."""

    def encode(self, processor, prompts, images, answers=None):
        return {"prompts": list(prompts), "images": [len(i) for i in images]}


def _val_batches(root, mode):
    _noise(seed=1).save(root / "img" / "later.png")
    _table(root, b"fine,img/ok.png,red\nlater,img/later.png,blue\nalso,img/ok.png,red\n")
    datamodule = _datamodule(root, f"data.val_file={root / 'train.csv'}", "data.eval_batch_size=2", mode=mode)
    datamodule.setup("validate")
    _truncated_jpeg(root / "img" / "later.png")  # passed the check, broken before it is batched
    datamodule.processor, datamodule.prompt_format = object(), _CountingFormat()
    return datamodule, datamodule.val_dataloader()


def test_mid_run_error_names_the_row(root):
    _, loader = _val_batches(root, "error")
    with pytest.raises(BadSampleError, match="unreadable image") as err:
        list(loader)
    assert f"{root / 'train.csv'}:3" in str(err.value)


def test_mid_run_skip_keeps_the_batch_well_formed_and_counts_the_sample(root):
    datamodule, loader = _val_batches(root, "skip")
    batches = [datamodule.on_before_batch_transfer(batch, 0) for batch in loader]
    assert [batch["ids"] for batch in batches] == [["2"], ["4"]]
    first = batches[0]
    assert (
        len(first["samples"])
        == len(first["prompts"])
        == len(first["images"])
        == len(first["inputs"]["prompts"])
    )
    assert "skipped" not in first
    summary = datamodule.summary()["val"]
    assert summary["samples_skipped"] == 1 and summary["skipped_by_reason"] == {"image_at_load": 1}
    assert datamodule.skipped()[0]["source"] == f"{root / 'train.csv'}:3"
