"""PerceptSent, 100 Sports and Hugging Face layouts: counts, label rules, folds, bad input, one run each."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from collections import Counter

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image

from mmlearn.data.folds import cross_validation_splits
from mmlearn.data.images import ArrowImageRef, load_rgb
from mmlearn.data.sample import BadSampleError
from mmlearn.tasks import MultiClassTask
from tests import layouts_more as layouts
from tests.conftest import REPO, compose

BASE = ["paths.root_dir=/tmp/mmlearn-tests", "paths.output_dir=/tmp/mmlearn-tests/out"]
P5 = ["negative", "slightly negative", "neutral", "slightly positive", "positive"]


def _datamodule(*overrides, modality="image"):
    datamodule = instantiate(compose([*BASE, f"modality={modality}", *overrides]).data, _convert_="all")
    datamodule.setup()
    return datamodule


def _counts(datamodule):
    return {
        s: (len(datamodule.splits[s]), dict(datamodule.reports[s].label_counts)) for s in datamodule.splits
    }


def _labels(datamodule):
    return {sample.id: sample.labels[0] for samples in datamodule.splits.values() for sample in samples}


@pytest.fixture(scope="module")
def perceptsent(tmp_path_factory):
    return layouts.write_perceptsent(tmp_path_factory.mktemp("perceptsent"))


@pytest.fixture(scope="module")
def sports(tmp_path_factory):
    return layouts.write_sports(tmp_path_factory.mktemp("sports"))


@pytest.fixture(scope="module")
def hf_saved(tmp_path_factory):
    return layouts.write_hf_saved(tmp_path_factory.mktemp("hf") / "saved", tmp_path_factory.mktemp("hfimg"))


@pytest.fixture(scope="module")
def hf_parquet(tmp_path_factory):
    return layouts.write_hf_parquet(tmp_path_factory.mktemp("parquet"), tmp_path_factory.mktemp("pqimg"))


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    return layouts.write_imagefolder(tmp_path_factory.mktemp("imagefolder"))


# --- PerceptSent ------------------------------------------------------------------------------------
def _ps(root, *overrides, **kwargs):
    return _datamodule(
        "data=perceptsent", f"data.root={root}", "data.val_fraction=0.25", *overrides, **kwargs
    )


def test_perceptsent_split_counts(perceptsent):
    # 24 images; P5 with alpha 3 keeps 22 (a8: 2-2, a9: 1 each). Fold 0 of 5 takes one image per class;
    # val takes 4 of the other 17, the head of each class's shuffled order (classes spread evenly).
    datamodule = _ps(perceptsent)
    assert _counts(datamodule) == {
        "train": (
            13,
            {"negative": 3, "slightly negative": 2, "neutral": 3, "slightly positive": 3, "positive": 2},
        ),
        "val": (4, {"negative": 1, "slightly negative": 1, "neutral": 1, "positive": 1}),
        "test": (5, dict.fromkeys(P5, 1)),
    }
    assert datamodule.task.labels == P5
    settings = datamodule.summary()["settings"]
    assert settings["responses_read"] == 24 * 5 and settings["images_annotated"] == 24
    assert (settings["below_agreement"], settings["tied"], settings["images_kept"]) == (2, 0, 22)
    assert (settings["problem"], settings["alpha"], settings["fold"], settings["num_folds"]) == (
        "P5",
        3,
        0,
        5,
    )


FILLERS = {"N": "negative", "n": "negative", "0": "neutral", "p": "positive", "P": "positive"}
EXPECTED = {  # (problem, alpha) -> labels of a1..a9 (None: excluded by the alpha rule)
    ("P5", 3): ["negative", "negative", "slightly negative", "neutral", "neutral", "slightly positive",
                "positive", None, None],
    ("P5", 4): ["negative", None, None, None, "neutral", None, "positive", None, None],
    ("P5", 5): ["negative", None, None, None, None, None, None, None, None],
    ("P3", 3): ["negative", "negative", "negative", "neutral", "neutral", "positive", "positive", "positive", None],
    ("P3", 4): ["negative", "negative", None, None, "neutral", "positive", "positive", "positive", None],
    ("P2+", 3): ["negative"] * 3 + ["non-negative"] * 6,
    ("P2-", 3): ["non-positive"] * 5 + ["positive"] * 3 + ["non-positive"],
}  # fmt: skip


@pytest.mark.parametrize(("problem", "alpha"), list(EXPECTED))
def test_perceptsent_problem_maps_and_alpha_rule(perceptsent, problem, alpha):
    datamodule = _ps(perceptsent, f"data.problem={problem}", f"data.alpha={alpha}")
    labels = _labels(datamodule)
    expected = {f"a{i + 1}": label for i, label in enumerate(EXPECTED[problem, alpha]) if label is not None}
    assert {k: v for k, v in labels.items() if k.startswith("a")} == expected
    fillers = {k: v for k, v in labels.items() if k.startswith("f")}
    assert len(fillers) == 15  # unanimous images pass every alpha
    if problem == "P3":
        assert fillers == {k: FILLERS[k[1]] for k in fillers}
    below = sum(label is None for label in EXPECTED[problem, alpha])
    assert datamodule.summary()["settings"]["below_agreement"] == below
    assert sum(len(s) for s in datamodule.splits.values()) == 24 - below


def test_perceptsent_ties_are_counted_apart(perceptsent):
    datamodule = _ps(perceptsent, "data.alpha=2")
    settings = datamodule.summary()["settings"]
    assert (settings["tied"], settings["below_agreement"]) == (1, 1)  # a8 (2 P, 2 p), a9
    assert "a8" not in _labels(datamodule)


def test_folds_are_disjoint_cover_the_data_and_stable():
    rng = random.Random(3)
    labels = {f"img{i:03d}": rng.choice("abc") for i in range(47)}
    splits = [
        cross_validation_splits(labels, num_folds=5, fold=f, val_fraction=0.2, seed=7) for f in range(5)
    ]
    tests = [{k for k, v in s.items() if v == "test"} for s in splits]
    assert set().union(*tests) == set(labels) and sum(map(len, tests)) == len(labels)
    assert sorted(map(len, tests)) == [9, 9, 9, 10, 10]
    for split in splits:
        assert set(split) == set(labels) and set(split.values()) == {"train", "val", "test"}
        assert sum(v == "val" for v in split.values()) == round(
            0.2 * sum(v != "test" for v in split.values())
        )
    for label, total in Counter(labels.values()).items():  # stratified: each fold gets its share
        per_fold = [sum(labels[k] == label for k in test) for test in tests]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == total
    shuffled = dict(sorted(labels.items(), reverse=True))
    assert cross_validation_splits(shuffled, num_folds=5, fold=2, val_fraction=0.2, seed=7) == splits[2]
    assert cross_validation_splits(labels, num_folds=5, fold=2, val_fraction=0.2, seed=8) != splits[2]


def test_perceptsent_folds_through_the_datamodule(perceptsent):
    cfg = compose([*BASE, "modality=image", "data=perceptsent", f"data.root={perceptsent}"])
    tests = []
    for fold in (0, 1, 2, 3, 4, 3):
        cfg.data.fold = fold
        datamodule = instantiate(cfg.data, _convert_="all")
        datamodule.setup()
        tests.append({s.id for s in datamodule.splits["test"]})
    assert sum(map(len, tests[:5])) == 22 and len(set().union(*tests)) == 22
    assert tests[5] == tests[3]


def _edit_json(root, edit):
    data = json.loads((root / "dataset.json").read_text())
    edit(data)
    (root / "dataset.json").write_text(json.dumps(data))


def test_perceptsent_unknown_sentiment_names_the_response(tmp_path):
    root = layouts.write_perceptsent(tmp_path)
    _edit_json(root, lambda d: d["tasks"][2]["image_resps"][1].update(sentiment="Happy"))
    with pytest.raises(
        BadSampleError, match=r"dataset\.json:tasks\[2\]\.image_resps\[1\]: unknown sentiment 'Happy'"
    ):
        _ps(root)
    datamodule = _ps(root, "data.on_bad_sample=skip")
    settings = datamodule.summary()["settings"]
    # tasks[2] is w2's first assignment; response 1 is a2 (NNNnn): without w2's N it has 2 N, 2 n
    assert settings["responses_skipped"] == 1 and settings["below_agreement"] == 3
    (skip,) = datamodule.skipped()
    assert skip["split"] == "annotations" and skip["id"] == "a2" and "Happy" in skip["reason"]


def test_perceptsent_missing_image_names_its_first_vote(tmp_path):
    root = layouts.write_perceptsent(tmp_path)
    (root / "images" / "a1.jpg").unlink()
    with pytest.raises(BadSampleError, match=r"tasks\[0\]\.image_resps\[0\]: image not found: .*a1\.jpg"):
        _ps(root)
    datamodule = _ps(root, "data.on_bad_sample=skip")
    assert sum(len(s) for s in datamodule.splits.values()) == 21
    assert [(s["id"], s["reason_kind"]) for s in datamodule.skipped()] == [("a1", "image")]


def test_perceptsent_responses_key_is_configurable(tmp_path):
    root = layouts.write_perceptsent(tmp_path, responses_key="images")
    with pytest.raises(BadSampleError, match=r"tasks\[0\]: no 'image_resps' list"):
        _ps(root)
    assert sum(len(s) for s in _ps(root, "data.responses_key=images").splits.values()) == 22


def test_perceptsent_text_comes_only_from_captions(tmp_path):
    root = layouts.write_perceptsent(tmp_path)
    with pytest.raises(InstantiationException, match="images only"):
        _ps(root, modality="text_image")
    captions = layouts.write_perceptsent_captions(root, missing="a3")
    with pytest.raises(BadSampleError, match=r"tasks\[0\]\.image_resps\[2\]: no caption for image 'a3'"):
        _ps(root, f"data.captions_file={captions}", modality="text")
    datamodule = _ps(root, f"data.captions_file={captions}", "data.on_bad_sample=skip", modality="text_image")
    assert sum(len(s) for s in datamodule.splits.values()) == 21
    sample = next(s for split in datamodule.splits.values() for s in split if s.id == "a2")
    assert sample.text == "A picture, a2, of a street." and sample.image_path == root / "images" / "a2.jpg"
    text_only = _ps(root, f"data.captions_file={captions}", "data.on_bad_sample=skip", modality="text")
    assert all(s.image_path is None for split in text_only.splits.values() for s in split)


# --- 100 Sports --------------------------------------------------------------------------------------
def _sports(root, *overrides, **kwargs):
    return _datamodule("data=sports100", f"data.root={root}", *overrides, **kwargs)


def test_sports_counts_and_label_set(sports):
    datamodule = _sports(sports)
    assert datamodule.task.labels == ["air hockey", "baseball", "formula 1 racing", "tug of war"]
    assert _counts(datamodule) == {
        split: (sum(files.values()), files)
        for split, files in zip(("train", "val", "test"), layouts.SPORTS_FILES.values(), strict=True)
    }
    sample = datamodule.splits["val"][0]
    assert sample.id == "valid/air hockey/001.jpg" and sample.text is None


def test_sports_label_set_comes_from_train_only(tmp_path):
    root = layouts.write_sports(tmp_path)
    (root / "valid" / "curling").mkdir()
    Image.new("RGB", (8, 8)).save(root / "valid" / "curling" / "001.jpg")
    with pytest.raises(
        BadSampleError, match=r"valid/curling/001\.jpg: class folder 'curling' is not a train"
    ):
        _sports(root)
    datamodule = _sports(root, "data.on_bad_sample=skip")
    assert datamodule.reports["val"].read == 5 and len(datamodule.splits["val"]) == 4
    assert [s["source"] for s in datamodule.skipped()] == [str(root / "valid" / "curling" / "001.jpg")]
    assert "curling" not in datamodule.task.labels


def test_sports_bad_files_are_named(tmp_path):
    root = layouts.write_sports(tmp_path)
    (root / "test" / "baseball" / "002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BadSampleError, match=r"test/baseball/002\.jpg: unreadable image"):
        _sports(root)
    (root / "test" / "baseball" / "002.jpg").unlink()
    (root / "train" / "notes.txt").write_text("x")
    with pytest.raises(BadSampleError, match=r"train/notes\.txt: not a file directly inside a class folder"):
        _sports(root)


def test_sports_has_no_text(sports):
    for modality in ("text", "text_image"):
        with pytest.raises(InstantiationException, match="images only"):
            _sports(sports, modality=modality)


def test_sport_names_parse_by_exact_match_after_normalisation():
    task = MultiClassTask(["tug of war", "formula 1 racing", "ski-jumping"], "What sport is in this image?")
    assert task.parse(" Tug  of War.").labels == ("tug of war",)
    assert task.parse("FORMULA 1 RACING").labels == ("formula 1 racing",)
    assert task.parse("Ski-Jumping").labels == ("ski-jumping",)
    for near_miss in ("tug-of-war", "ski jumping", "formula one racing"):  # the seed's exact match
        assert not task.parse(near_miss).ok
    for label in task.labels:
        assert task.parse(task.target((label,))).labels == (label,)


# --- Hugging Face datasets -----------------------------------------------------------------------------
HF_COUNTS = {
    ours: (len(rows), dict(Counter(rows)))
    for ours, rows in zip(("train", "val", "test"), layouts.HF_ROWS.values(), strict=True)
}
HF_COLUMNS = ["data.image_column=picture", "data.label_column=target"]


def _hf(root, *overrides, **kwargs):
    return _datamodule("data=hf", f"data.root={root}", *overrides, **kwargs)


def test_hf_saved_datasetdict(hf_saved):
    datamodule = _hf(
        hf_saved, *HF_COLUMNS, "data.id_column=uid", "data.text_column=caption", modality="text_image"
    )
    assert datamodule.task.labels == layouts.HF_LABELS  # from the ClassLabel
    assert _counts(datamodule) == HF_COUNTS
    sample = datamodule.splits["test"][2]
    assert (sample.id, sample.text, sample.labels) == ("test-02", "a photo of a bird number 2", ("bird",))
    assert isinstance(sample.image_path, ArrowImageRef)
    assert load_rgb(sample.image_path).getpixel((0, 0)) == (0, 60, 50)


def test_hf_imagefolder(imagefolder, tmp_path):
    datamodule = _hf(imagefolder, "data.loader=imagefolder", f"data.cache_dir={tmp_path}")
    assert datamodule.task.labels == layouts.HF_LABELS
    assert _counts(datamodule) == HF_COUNTS
    assert list(tmp_path.iterdir())  # the datasets library's own Arrow cache


def test_hf_parquet_labels_from_config(hf_parquet, tmp_path):
    common = ["data.loader=parquet", f"data.cache_dir={tmp_path}", *HF_COLUMNS]
    with pytest.raises(ValueError, match=r"not a ClassLabel: set data\.labels"):
        _hf(hf_parquet, *common)
    datamodule = _hf(hf_parquet, *common, "data.labels=[bird,cat,dog]")
    assert _counts(datamodule) == HF_COUNTS
    with pytest.raises(BadSampleError, match=r"\[train\]:2: unknown label 'bird'"):
        _hf(hf_parquet, *common, "data.labels=[cat,dog]")
    skipping = _hf(hf_parquet, *common, "data.labels=[cat,dog]", "data.on_bad_sample=skip")
    assert [len(s) for s in skipping.splits.values()] == [5, 2, 3]
    assert len(skipping.skipped()) == 3


def test_hf_mapping_errors_name_the_key(hf_saved):
    with pytest.raises(ValueError, match=r"no column 'image' \(data.image_column\); columns: \['uid'"):
        _hf(hf_saved, "data.label_column=target")
    with pytest.raises(ValueError, match=r"ClassLabel .*: set data.labels=null"):
        _hf(hf_saved, *HF_COLUMNS, "data.labels=[a,b,c]")
    with pytest.raises(ValueError, match=r"no split 'dev' \(data.splits.val\)"):
        _hf(hf_saved, *HF_COLUMNS, "data.splits.val=dev")
    with pytest.raises(InstantiationException, match=r"needs data\.text_column"):
        _hf(hf_saved, *HF_COLUMNS, modality="text")


def test_hf_missing_image_is_a_bad_row(tmp_path):
    from datasets import DatasetDict

    train = layouts._hf_split("train", tmp_path / "img", True)
    train = train.map(lambda row, i: {"picture": None if i == 4 else row["picture"]}, with_indices=True)
    DatasetDict({"train": train, "validation": train, "test": train}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(BadSampleError, match=r"\[train\]:4: .*no image"):
        _hf(tmp_path / "d", *HF_COLUMNS)
    datamodule = _hf(tmp_path / "d", *HF_COLUMNS, "data.on_bad_sample=skip")
    assert [len(s) for s in datamodule.splits.values()] == [5, 5, 5]


def test_arrow_images_stay_on_disk_until_loaded(tmp_path):
    """A sample pickles as a file reference (for DataLoader workers), not as its image's bytes."""
    from datasets import Dataset, Features
    from datasets import Image as HFImage

    noise = Image.frombytes("RGB", (256, 256), random.Random(0).randbytes(256 * 256 * 3))
    noise.save(tmp_path / "noise.png")
    data = Dataset.from_dict(
        {"image": [str(tmp_path / "noise.png")] * 3}, features=Features({"image": HFImage()})
    )
    data.save_to_disk(str(tmp_path / "saved"))
    from datasets import load_from_disk

    images = load_from_disk(str(tmp_path / "saved")).cast_column("image", HFImage(decode=False))
    refs = [ArrowImageRef(images, i) for i in range(3)]
    payload = pickle.dumps(refs)
    assert len(payload) < 20_000 < (tmp_path / "noise.png").stat().st_size
    again = pickle.loads(payload)
    assert again == refs and list(load_rgb(again[2]).getdata()) == list(noise.getdata())


def test_arrow_images_load_in_dataloader_workers(hf_saved):
    from torch.utils.data import DataLoader

    from mmlearn.data.datamodule import SampleDataset

    datamodule = _hf(hf_saved, *HF_COLUMNS)
    loader = DataLoader(
        SampleDataset(datamodule.splits["train"]),
        batch_size=3,
        num_workers=1,
        collate_fn=lambda batch: [load_rgb(s.image_path).size for s in batch],
    )
    assert [size for batch in loader for size in batch] == [(16, 16)] * 6


# --- one run per layout ------------------------------------------------------------------------------
RUN = ["model=qwen2vl_tiny", "trainer.max_steps=2", "logger=csv", "modality=image"]
RUN += ["data.batch_size=2", "data.eval_batch_size=8"]


def _train(run_dir, *overrides):
    out = subprocess.run(
        [sys.executable, "train.py", *RUN, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())
    return json.loads((run_dir / "data_summary.json").read_text())


def _split_counts(summary):
    return {s: (summary[s]["samples_kept"], summary[s]["label_counts"]) for s in ("train", "val", "test")}


@pytest.mark.slow
def test_perceptsent_end_to_end(tmp_path, tiny_qwen2vl, perceptsent):
    summary = _train(
        tmp_path / "run", "data=perceptsent", f"data.root={perceptsent}", "data.val_fraction=0.25"
    )
    assert _split_counts(summary) == _counts(_ps(perceptsent))
    assert summary["settings"]["below_agreement"] == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test/f1_weighted", "test/f1_macro", "test/parse_failure_rate"} <= set(metrics)


@pytest.mark.slow
def test_sports_end_to_end(tmp_path, tiny_qwen2vl, sports):
    summary = _train(tmp_path / "run", "data=sports100", f"data.root={sports}")
    assert _split_counts(summary) == _counts(_sports(sports))
    assert summary["test"]["label_counts"] == layouts.SPORTS_FILES["test"]


@pytest.mark.slow
def test_hf_end_to_end(tmp_path, tiny_qwen2vl, hf_saved):
    summary = _train(tmp_path / "run", "data=hf", f"data.root={hf_saved}", *HF_COLUMNS)
    assert _split_counts(summary) == HF_COUNTS
    predictions = (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()
    assert len(predictions) == 4


def test_hf_multilabel_from_a_list_of_classlabels(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    features = Features({"caption": Value("string"), "tags": List(ClassLabel(names=["red", "blue"]))})
    rows = Dataset.from_dict({"caption": ["a", "b", "c"], "tags": [[0], [0, 1], []]}, features=features)
    DatasetDict({"train": rows, "validation": rows, "test": rows}).save_to_disk(str(tmp_path / "d"))
    common = ["data.task=multilabel", "data.text_column=caption", "data.label_column=tags"]
    datamodule = _hf(tmp_path / "d", *common, "data.image_column=null", modality="text")
    assert datamodule.task.labels == ["red", "blue"]
    assert [s.labels for s in datamodule.splits["test"]] == [("red",), ("red", "blue"), ()]
