"""data.captions_file for every reader: each sample's text is the caption of its id (a CSV id,text as
caption.py writes it), a sample without a caption is a bad sample named or counted, a modality without
text refuses the file by name, and train.py trains on the captions."""

from __future__ import annotations

import csv
import json

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mmlearn.data.demo import build_demo
from mmlearn.data.sample import BadSampleError
from tests import layouts
from tests.conftest import compose, run_script

BASE = ["paths.root_dir=/tmp/mmlearn-tests", "paths.output_dir=/tmp/mmlearn-tests/out"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("demo"), splits={"train": 8, "val": 4, "test": 4}, image_size=16, seed=0
    )


def _ids(root, split):
    with (root / f"{split}.csv").open(newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


def write_captions(path, ids, skip=(), empty=(), encoding="utf-8"):
    """caption.py's layout (id,text) with an extra column the reader ignores."""
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "model"])
        for sample_id in ids:
            if sample_id not in skip:
                writer.writerow([sample_id, " " if sample_id in empty else f"a caption of {sample_id}", "x"])
    return path


def _csv(root, *overrides, modality="text"):
    files = [f"data.{s}_file={root}/{s}.csv" for s in ("train", "val", "test")]
    data = ["data=csv", *files, f"data.image_root={root}", f"data.labels_file={root}/labels.txt"]
    datamodule = instantiate(
        compose([*BASE, f"modality={modality}", *data, *overrides]).data, _convert_="all"
    )
    datamodule.setup()
    return datamodule


def _all_ids(root):
    return [i for split in ("train", "val", "test") for i in _ids(root, split)]


def test_csv_text_becomes_the_caption_of_each_id(demo, tmp_path):
    captions = write_captions(tmp_path / "captions.csv", _all_ids(demo))
    own = _csv(demo)
    for modality in ("text", "text_image"):
        captioned = _csv(demo, f"data.captions_file={captions}", modality=modality)
        for split, samples in captioned.splits.items():
            assert [s.id for s in samples] == [s.id for s in own.splits[split]] == _ids(demo, split)
            assert [s.labels for s in samples] == [s.labels for s in own.splits[split]]
            assert all(
                s.text == f"a caption of {s.id}" != o.text
                for s, o in zip(samples, own.splits[split], strict=True)
            )
            assert all((s.image_path is None) == (modality == "text") for s in samples)
        assert captioned.summary()["settings"] == {"captions_file": str(captions)}
    assert "settings" not in own.summary()


def test_a_missing_or_empty_caption_names_the_file_and_id(demo, tmp_path):
    captions = write_captions(tmp_path / "captions.csv", _all_ids(demo), skip={"val-2"}, empty={"test-1"})
    with pytest.raises(BadSampleError, match=rf"val\.csv:4: no caption for image 'val-2' in {captions}"):
        _csv(demo, f"data.captions_file={captions}")
    with pytest.raises(BadSampleError, match=rf"test\.csv:3: no caption for image 'test-1' in {captions}"):
        _csv(demo, f"data.captions_file={captions}", "data.val_file=null")


def test_skip_counts_and_lists_the_samples_without_a_caption(demo, tmp_path):
    captions = write_captions(tmp_path / "captions.csv", _all_ids(demo), skip={"val-2"}, empty={"test-1"})
    own = _csv(demo)
    datamodule = _csv(demo, f"data.captions_file={captions}", "data.on_bad_sample=skip")
    assert [s.id for s in datamodule.splits["val"]] == [i for i in _ids(demo, "val") if i != "val-2"]
    assert len(datamodule.splits["train"]) == 8 and len(datamodule.splits["test"]) == 3
    summary = datamodule.summary()
    assert summary["val"]["samples_read"] == 4 and summary["val"]["samples_kept"] == 3
    assert summary["val"]["samples_skipped"] == 1 and summary["val"]["skipped_by_reason"] == {"caption": 1}
    assert summary["train"] == own.summary()["train"]
    dropped = next(s for s in own.splits["val"] if s.id == "val-2")
    for label, count in own.summary()["val"]["label_counts"].items():
        assert summary["val"]["label_counts"].get(label, 0) == count - (label in dropped.labels)
    listed = [(s["split"], s["id"], s["source"], s["reason_kind"]) for s in datamodule.skipped()]
    assert listed == [("val", "val-2", f"{demo}/val.csv:4", "caption"), ("test", "test-1", f"{demo}/test.csv:3", "caption")]  # fmt: skip


def test_a_modality_without_text_refuses_the_captions_file(demo, tmp_path):
    captions = write_captions(tmp_path / "captions.csv", _all_ids(demo))
    with pytest.raises(
        InstantiationException, match=r"data.captions_file=.*captions\.csv .*modality=image reads no text"
    ):
        _csv(demo, f"data.captions_file={captions}", modality="image")  # fmt: skip


def test_the_captions_file_is_read_in_data_encoding_with_or_without_a_bom(demo, tmp_path):
    ids = _all_ids(demo)
    bom = write_captions(tmp_path / "bom.csv", ids, encoding="utf-8-sig")
    assert (
        _csv(demo, f"data.captions_file={bom}", "data.encoding=utf-8").splits["val"][0].text
        == "a caption of val-0"
    )
    latin = tmp_path / "latin.csv"
    latin.write_text("id,text\n" + "".join(f"{i},café {i}\n" for i in ids), encoding="latin-1")
    assert (
        _csv(demo, f"data.captions_file={latin}", "data.encoding=latin-1").splits["val"][0].text
        == "café val-0"
    )
    with pytest.raises(
        BadSampleError, match=r"train\.csv:2: the caption of 'train-0' in .*latin\.csv: byte 0xe9"
    ):
        _csv(demo, f"data.captions_file={latin}")  # fmt: skip


def test_a_captions_file_without_its_columns_or_with_two_captions_for_an_id_is_refused(demo, tmp_path):
    (tmp_path / "cols.csv").write_text("image,caption\nval-0,x\n")
    with pytest.raises(ValueError, match=r"cols\.csv: needs columns id,text; found \['image', 'caption'\]"):
        _csv(demo, f"data.captions_file={tmp_path / 'cols.csv'}")
    (tmp_path / "twice.csv").write_text("id,text\nval-0,one\nval-1,x\nval-0,two\n")
    with pytest.raises(ValueError, match=r"twice\.csv:4: id 'val-0' has two different captions"):
        _csv(demo, f"data.captions_file={tmp_path / 'twice.csv'}")
    with pytest.raises(FileNotFoundError, match=r"data.captions_file not found: .*nowhere\.csv"):
        _csv(demo, f"data.captions_file={tmp_path / 'nowhere.csv'}")


def test_a_seed_reader_reads_the_captions_too(tmp_path):
    root = layouts.write_hateful_memes(tmp_path / "memes")
    ids = [str(row[0]) for name, rows in layouts.MEMES.items() for row in rows]
    captions = write_captions(tmp_path / "captions.csv", ids, skip={"46971"})
    memes = ["data=hateful_memes", f"data.root={root}", f"data.captions_file={captions}", "modality=text"]
    with pytest.raises(
        BadSampleError, match=rf"dev_seen\.jsonl:2: no caption for image '46971' in {captions}"
    ):
        instantiate(compose([*BASE, *memes]).data, _convert_="all").setup()
    datamodule = instantiate(compose([*BASE, *memes, "data.on_bad_sample=skip"]).data, _convert_="all")
    datamodule.setup()
    samples = [s for split in datamodule.splits.values() for s in split]
    assert samples and all(s.text == f"a caption of {s.id}" for s in samples)
    assert [(s["split"], s["id"]) for s in datamodule.skipped()] == [("val", "46971")]
    assert datamodule.summary()["settings"]["captions_file"] == str(captions)


def test_perceptsent_images_get_their_text_on_the_shared_path(tmp_path):
    from tests import layouts_more

    root = layouts_more.write_perceptsent(tmp_path)
    captions = layouts_more.write_perceptsent_captions(root, missing="a3")
    ps = [
        "data=perceptsent",
        f"data.root={root}",
        f"data.captions_file={captions}",
        "data.on_bad_sample=skip",
    ]
    datamodule = instantiate(compose([*BASE, "modality=text", *ps]).data, _convert_="all")
    datamodule.setup()
    settings = datamodule.summary()["settings"]
    assert settings["captions_file"] == str(captions) and settings["problem"] == "P5"
    assert [(s["id"], s["reason_kind"]) for s in datamodule.skipped()] == [("a3", "caption")]


def test_sports_captions_references_are_not_a_captions_file(tmp_path):
    """data=sports_captions' reference captions (data.references_file) set no sample's text."""
    from tests.layouts_qa_captions import write_sports_captions

    root = write_sports_captions(tmp_path / "sports")
    cfg = compose([*BASE, "data=sports_captions", f"data.root={root}", "modality=image"])
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup()
    assert datamodule.captions_csv is None and "captions_file" not in datamodule.summary()["settings"]
    assert all(s.text is None and s.labels for split in datamodule.splits.values() for s in split)


def test_conversations_refuse_a_captions_file_by_name(tmp_path):
    """A conversation's turns are what trains: a caption in its `text` would be silently unused."""
    from tests import layouts_conversations

    path = layouts_conversations.write_conversations(tmp_path)["llava"]
    captions = tmp_path / "captions.csv"
    captions.write_text("id,text\n")
    files = [
        f"data.train_file={path}",
        f"data.val_file={path}",
        "data.test_file=null",
        f"data.image_root={tmp_path}",
    ]
    cfg = compose(
        [*BASE, "data=conversations", *files, "modality=text_image", f"data.captions_file={captions}"]
    )
    with pytest.raises(ValueError, match=r"data.captions_file=.*captions\.csv replaces .* is a conversation"):
        instantiate(cfg.data, _convert_="all").setup()


@pytest.mark.slow
def test_train_py_trains_on_the_captions(tmp_path, tiny_qwen2vl, demo_dir):
    captions = write_captions(tmp_path / "captions.csv", _all_ids(demo_dir), skip={"train-3"})
    run = tmp_path / "run"
    run_script(
        "train.py", "experiment=demo", "modality=text", "logger=csv", "trainer.max_steps=1",
        f"data.root={demo_dir}", "data.prepare.splits={train: 16, val: 8, test: 8}", "data.batch_size=4",
        f"data.captions_file={captions}", "data.on_bad_sample=skip", f"hydra.run.dir={run}",
    )  # fmt: skip
    summary = json.loads((run / "data_summary.json").read_text())
    assert summary["settings"]["captions_file"] == str(captions)
    assert summary["train"]["samples_kept"] == 15 and summary["train"]["skipped_by_reason"] == {"caption": 1}
    skipped = [json.loads(line) for line in (run / "skipped_samples.jsonl").read_text().splitlines()]
    assert [(s["split"], s["id"], s["reason_kind"]) for s in skipped] == [("train", "train-3", "caption")]
    assert json.loads((run / "metrics.json").read_text())["test/f1_macro"] >= 0
