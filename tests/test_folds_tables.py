"""data.fold for data=csv and data=hf: the labelled rows of the train source re-split into train/val/test,
stratified and seeded; over the folds every row is tested exactly once; mixing folds with given val/test
files is refused by name."""

from collections import Counter

import pytest
from hydra.errors import InstantiationException

from mmlearn.data.demo import build_demo
from tests import layouts_more as layouts
from tests.test_datasets_more import HF_COLUMNS, _datamodule

FOLDS = 4


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("demo"), splits={"train": 40, "val": 2, "test": 2}, image_size=16, seed=3
    )


def _csv(root, *overrides):
    files = [f"data.train_file={root / 'train.csv'}", "data.val_file=null", "data.test_file=null"]
    return _datamodule(
        "data=csv", *files, f"data.image_root={root}", f"data.labels_file={root / 'labels.txt'}", *overrides,
        modality="text_image",
    )  # fmt: skip


def _ids(datamodule, split):
    return [s.id for s in datamodule.splits[split]]


def test_csv_folds_test_every_row_once_and_keep_the_splits_apart(demo):
    tested = []
    for fold in range(FOLDS):
        datamodule = _csv(demo, f"data.fold={fold}", f"data.num_folds={FOLDS}", "data.val_fraction=0.2")
        train, val, test = (set(_ids(datamodule, s)) for s in ("train", "val", "test"))
        assert not (train & val or train & test or val & test)
        assert len(train | val | test) == 40
        assert len(test) == 10 and len(val) == 6  # 40 / 4 folds; 20% of the other 30
        tested += test
        summary = datamodule.summary()
        assert summary["settings"] == {"fold": fold, "num_folds": FOLDS, "split_seed": 0}
        assert (
            summary["test"]["samples_kept"] == 10
            and f"fold {fold} of {FOLDS}: test" in summary["test"]["file"]
        )
    assert sorted(tested) == sorted(_ids(_csv(demo), "train"))  # each row tested once over the folds
    again = _csv(demo, "data.fold=1", f"data.num_folds={FOLDS}", "data.val_fraction=0.2")
    seeded = _csv(
        demo, "data.fold=1", f"data.num_folds={FOLDS}", "data.val_fraction=0.2", "data.split_seed=5"
    )
    assert _ids(again, "test") == _ids(
        _csv(demo, "data.fold=1", f"data.num_folds={FOLDS}", "data.val_fraction=0.2"), "test"
    )
    assert set(_ids(seeded, "test")) != set(_ids(again, "test"))


def test_folds_are_stratified_by_label_set(demo):
    datamodule = _csv(demo, "data.fold=0", f"data.num_folds={FOLDS}", "data.val_fraction=0.2")
    everything = Counter(
        tuple(sorted(s.labels)) for split in ("train", "val", "test") for s in datamodule.splits[split]
    )
    test = Counter(tuple(sorted(s.labels)) for s in datamodule.splits["test"])
    for stratum, n in everything.items():
        assert abs(test[stratum] - n / FOLDS) <= 1, (stratum, test[stratum], n)


def test_folds_with_given_val_or_test_files_are_refused(demo):
    with pytest.raises(
        InstantiationException, match=r"data.fold re-splits the rows of data.train_file.*data.val_file=null"
    ):
        _datamodule(
            "data=csv", f"data.train_file={demo / 'train.csv'}", f"data.val_file={demo / 'val.csv'}",
            "data.test_file=null", f"data.image_root={demo}", f"data.labels_file={demo / 'labels.txt'}",
            "data.fold=0", modality="text_image",
        )  # fmt: skip


def test_hf_folds_resplit_the_train_split(tmp_path):
    root = layouts.write_hf_saved(tmp_path / "saved", tmp_path / "images")
    base = ["data=hf", f"data.root={root}", *HF_COLUMNS, "data.splits={train: train, val: null, test: null}"]
    tested = []
    for fold in range(3):
        datamodule = _datamodule(*base, f"data.fold={fold}", "data.num_folds=3", "data.val_fraction=0.25")
        assert {s: len(datamodule.splits[s]) for s in datamodule.splits} == {"train": 3, "val": 1, "test": 2}
        tested += _ids(datamodule, "test")
    assert sorted(tested) == sorted(f"train-{i}" for i in range(6))
    with pytest.raises(InstantiationException, match=r"set data.splits.val=null data.splits.test=null"):
        _datamodule("data=hf", f"data.root={root}", *HF_COLUMNS, "data.fold=0")
