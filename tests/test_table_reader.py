"""The generic CSV/JSONL layout: labels, bad rows, and nothing dropped silently."""

import json

import pytest
from PIL import Image

from mmlearn.data.modality import Modality
from mmlearn.data.policy import InputPolicy
from mmlearn.data.sample import BadSampleError
from mmlearn.data.table_reader import TableReader, parse_labels

LABELS = ["racist", "sexist", "homophobe"]
INPUTS = {"encoding": "utf-8-sig", "max_image_pixels": 40_000_000, "image_background": [255, 255, 255]}


def _reader(root, on_bad_sample="error", task="multilabel", modality="text_image", **inputs):
    policy = InputPolicy.from_config(on_bad_sample=on_bad_sample, **{**INPUTS, **inputs})
    return TableReader(image_root=root, labels=LABELS, task=task, modality=Modality(modality), inputs=policy)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "images" / f"{name}.jpg")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not an image")
    return tmp_path


def _csv(root, lines):
    path = root / "split.csv"
    path.write_text("text,image_path,labels\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("racist,sexist", ("racist", "sexist")),
        ('["racist", "sexist"]', ("racist", "sexist")),
        ("['sexist']", ("sexist",)),
        ("", ()),
        (" racist , ", ("racist",)),
        (["homophobe"], ("homophobe",)),
    ],
)
def test_parse_labels(raw, expected):
    assert parse_labels(raw) == expected


def test_reads_rows_and_counts_labels(root):
    path = _csv(
        root, ['hello,images/a.jpg,"racist,sexist"', "bye,images/b.jpg,", f"x,{root}/images/a.jpg,sexist"]
    )
    samples, report = _reader(root).read(path)
    assert [s.labels for s in samples] == [("racist", "sexist"), (), ("sexist",)]
    assert samples[2].image_path == root / "images" / "a.jpg"  # absolute paths kept
    assert report.summary()["label_counts"] == {"racist": 1, "sexist": 2}
    assert report.summary()["samples_read"] == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hi,images/missing.jpg,racist", "image not found"),
        ("hi,images/broken.jpg,racist", "unreadable image"),
        ("hi,images/a.jpg,martian", "unknown label"),
        ("hi,images/a.jpg,racist,extra", "fields"),
        (",images/a.jpg,racist", "empty text"),
    ],
)
def test_bad_rows_fail_naming_file_and_row(root, line, message):
    path = _csv(root, ["fine,images/a.jpg,racist", line])
    with pytest.raises(BadSampleError, match=message) as err:
        _reader(root).read(path)
    assert f"{path}:3" in str(err.value)


def test_skip_mode_counts_and_lists_every_skipped_row(root):
    path = _csv(root, ["ok,images/a.jpg,racist", "hi,images/missing.jpg,racist", "hi,images/a.jpg,martian"])
    samples, report = _reader(root, on_bad_sample="skip").read(path)
    assert len(samples) == 1
    summary = report.summary()
    assert (summary["samples_read"], summary["samples_kept"], summary["samples_skipped"]) == (3, 1, 2)
    assert summary["skipped_by_reason"] == {"image": 1, "row": 1}
    assert [item["source"] for item in report.skipped] == [f"{path}:3", f"{path}:4"]


def test_multiclass_rows_need_exactly_one_label(root):
    path = _csv(root, ['hi,images/a.jpg,"racist,sexist"'])
    with pytest.raises(BadSampleError, match="exactly one label"):
        _reader(root, task="multiclass").read(path)


def test_text_modality_never_touches_images(root):
    path = _csv(root, ["hi,images/missing.jpg,racist"])
    samples, _ = _reader(root, modality="text").read(path)
    assert samples[0].image_path is None and samples[0].text == "hi"


def test_jsonl_layout_and_malformed_lines(root):
    path = root / "split.jsonl"
    rows = [{"id": "t1", "text": "hi", "image_path": "images/a.jpg", "labels": ["racist"]}]
    path.write_text(json.dumps(rows[0]) + "\n{not json\n" + json.dumps(dict(rows[0], id="t1")) + "\n")
    samples, report = _reader(root, on_bad_sample="skip").read(path)
    assert [s.id for s in samples] == ["t1"]
    reasons = [item["reason"] for item in report.skipped]
    assert "malformed JSON" in reasons[0] and "duplicate id" in reasons[1]


def test_missing_column_is_an_error(root):
    path = root / "split.csv"
    path.write_text("text,labels\nhi,racist\n")
    with pytest.raises(BadSampleError, match="missing column"):
        _reader(root).read(path)
