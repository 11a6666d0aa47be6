"""Readers of new data: data=csv (and the demo, its layout) and data=hf take a predict file whose rows
need no labels; a Lightning stage reads only the splits it uses."""

import csv
import json

import pytest
from hydra.utils import instantiate

from mmlearn.building import build_datamodule
from tests.conftest import compose

DEMO = ["paths.root_dir=/tmp/x", "data.prepare.splits={train: 16, val: 8, test: 8}"]


def _unlabelled(demo_dir, path, drop_labels: bool):
    """The demo's test rows as a new file: without the labels column, or with every label empty."""
    rows = list(csv.DictReader((demo_dir / "test.csv").open()))[:3]
    for row in rows:
        row["id"] = f"new-{row['id']}"
        row.pop("labels") if drop_labels else row.update(labels="")
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return [row["id"] for row in rows]


@pytest.mark.parametrize(("name", "drop_labels"), [("new.csv", True), ("new.jsonl", False)])
def test_csv_predict_file_rows_need_no_labels(demo_dir, tmp_path, name, drop_labels):
    ids = _unlabelled(demo_dir, tmp_path / name, drop_labels)
    cfg = compose([*DEMO, f"data.root={demo_dir}", f"data.predict_file={tmp_path / name}"], "evaluate")
    datamodule = build_datamodule(cfg, read_splits=False)
    datamodule.setup("predict")
    assert set(datamodule.splits) == {"predict"}  # the stage read nothing else
    assert [(s.id, s.labels) for s in datamodule.splits["predict"]] == [(i, ()) for i in ids]
    assert datamodule.splits["predict"][0].image_path.is_file()
    datamodule.setup("test")
    assert set(datamodule.splits) == {"predict", "test"}


def test_a_labelled_split_still_needs_its_labels_column(demo_dir, tmp_path):
    _unlabelled(demo_dir, tmp_path / "new.csv", drop_labels=True)
    cfg = compose([*DEMO, f"data.root={demo_dir}", f"data.test_file={tmp_path / 'new.csv'}"], "evaluate")
    datamodule = build_datamodule(cfg, read_splits=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['labels'\]"):
        datamodule.setup("test")


def test_hf_predict_file_is_a_split_without_labels(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"caption": Value("string"), "label": ClassLabel(names=["cat", "dog"])})
    rows = Dataset.from_dict({"caption": ["a cat", "a dog"], "label": [0, 1]}, features=features)
    DatasetDict({"train": rows, "validation": rows, "test": rows}).save_to_disk(str(tmp_path / "d"))
    Dataset.from_dict({"caption": ["new one", "new two", "new three"]}).save_to_disk(str(tmp_path / "d/new"))
    common = ["data=hf", f"data.root={tmp_path / 'd'}", "data.text_column=caption", "data.image_column=null"]
    cfg = compose(["paths.root_dir=/tmp/x", "modality=text", *common, "data.predict_file=new"], "evaluate")
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("predict")
    assert set(datamodule.splits) == {"predict"} and datamodule.task.labels == ["cat", "dog"]
    assert [(s.id, s.text, s.labels) for s in datamodule.splits["predict"]] == [
        ("predict-0", "new one", ()),
        ("predict-1", "new two", ()),
        ("predict-2", "new three", ()),
    ]
    datamodule.setup()  # without a stage: every split, the predict file counted in the summary
    assert datamodule.summary()["predict"]["samples_kept"] == 3 and len(datamodule.splits) == 4
