"""Length-grouped batching: every index once per epoch, seeded, sharded across ranks, less padding on
real collated batches; token counts known before batching; over-long samples refused or skipped."""

import csv
import random

import pytest
import torch
from transformers import AutoProcessor

from mmlearn.data.collate import TrainCollator
from mmlearn.data.datamodule import TableDataModule
from mmlearn.data.modality import Modality
from mmlearn.data.sample import BadSampleError
from mmlearn.data.sampling import LengthGroupedSampler, padding_fraction
from tests.conftest import chat_prompt

_RNG = random.Random(0)
LENGTHS = [_RNG.randint(10, 200) for _ in range(103)]


def _order(epoch=0, **kw):
    sampler = LengthGroupedSampler(LENGTHS, **{"batch_size": 4, "megabatch_size": 3, "seed": 7, **kw})
    sampler.set_epoch(epoch)
    return list(sampler)


def test_every_index_exactly_once_per_epoch():
    for epoch in range(3):
        assert sorted(_order(epoch)) == list(range(len(LENGTHS)))


def test_deterministic_per_seed_and_epoch_and_different_across_epochs():
    assert _order(0) == _order(0)
    assert _order(1) == _order(1)
    assert _order(0) != _order(1)
    assert _order(0) != _order(0, seed=8)


def test_batches_inside_a_megabatch_are_sorted_by_length():
    order = _order(0, num_replicas=1, rank=0)
    batches = [order[i : i + 4] for i in range(0, len(order), 4)]
    spread = sum(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in batches) / len(batches)
    random_order = random.Random(1).sample(range(len(LENGTHS)), len(LENGTHS))
    random_batches = [random_order[i : i + 4] for i in range(0, len(random_order), 4)]
    random_spread = sum(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in random_batches)
    assert spread < 0.5 * random_spread / len(random_batches)


def test_two_ranks_get_disjoint_whole_batches_covering_everything():
    lengths = LENGTHS[:96]  # 96 = 2 ranks x 12 batches x 4
    ranks = []
    for rank in range(2):
        sampler = LengthGroupedSampler(
            lengths, batch_size=4, megabatch_size=3, seed=7, num_replicas=2, rank=rank
        )
        sampler.set_epoch(2)
        ranks.append(list(sampler))
        assert len(ranks[-1]) == len(sampler) == 48
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(96))
    single = LengthGroupedSampler(lengths, batch_size=4, megabatch_size=3, seed=7, num_replicas=1, rank=0)
    single.set_epoch(2)
    global_batches = [list(single)[i : i + 4] for i in range(0, 96, 4)]
    assert [ranks[0][i : i + 4] for i in range(0, 48, 4)] == global_batches[0::2]


def test_uneven_split_gives_every_rank_the_same_number_of_full_batches():
    ranks = [_order(0, num_replicas=2, rank=r) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) and len(ranks[0]) % 4 == 0
    assert set(ranks[0]) | set(ranks[1]) == set(range(len(LENGTHS)))


def test_lightning_keeps_the_sampler_under_ddp():
    # Lightning swaps in its own DistributedSampler only when the loader's sampler is not one.
    assert isinstance(
        LengthGroupedSampler(LENGTHS, batch_size=4, megabatch_size=3, seed=0),
        torch.utils.data.DistributedSampler,
    )


# --- on real collated batches -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def varied(tmp_path_factory, demo_dir):
    """48 demo samples whose texts are 1 to 12 sentences long."""
    root = tmp_path_factory.mktemp("varied")
    rows = list(csv.DictReader((demo_dir / "train.csv").open()))
    rng = random.Random(0)
    with (root / "train.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "image_path", "labels"])
        writer.writeheader()
        for i in range(48):
            row = dict(rows[i % len(rows)], id=f"s{i}")
            row["text"] = " ".join([row["text"]] * rng.randint(1, 12))
            row["image_path"] = str(demo_dir / row["image_path"])
            writer.writerow(row)
    (root / "labels.txt").write_text("red\nblue\nurgent\nquestion\n")
    return root


def _datamodule(root, **overrides):
    kwargs = dict(
        train_file=str(root / "train.csv"), val_file=None, test_file=None, predict_file=None, image_root=str(root),
        task="multilabel", instruction="Labels: {labels}.", labels=None, labels_file=str(root / "labels.txt"),
        name="varied", modality=Modality("text_image"), on_bad_sample="error", batch_size=4,
        eval_batch_size=8, num_workers=0, monitor="f1_macro", max_length=None, group_by_length=True,
        megabatch_size=16, class_balanced=False, pin_memory=True, seed=0,
        encoding="utf-8-sig", max_image_pixels=40_000_000, image_background=[255, 255, 255],
        fold=None, num_folds=5, val_fraction=0.1, split_seed=0,
    )  # fmt: skip
    datamodule = TableDataModule(**{**kwargs, **overrides})
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def processor(tiny_qwen2vl):
    return AutoProcessor.from_pretrained(tiny_qwen2vl)


def test_token_counts_equal_the_collated_lengths(varied, processor):
    datamodule = _datamodule(varied)
    datamodule.connect(processor, chat_prompt())
    collate = TrainCollator(processor, chat_prompt(), datamodule.task)
    samples = datamodule.splits["train"]
    exact = [int(collate([s])["inputs"]["attention_mask"].sum()) for s in samples]
    assert datamodule.lengths["train"] == exact
    assert max(exact) - min(exact) > 50  # the data really varies


def test_grouping_cuts_padding_on_real_batches(varied, processor):
    fractions = {}
    for grouped in (True, False):
        datamodule = _datamodule(varied, group_by_length=grouped)
        datamodule.connect(processor, chat_prompt())
        torch.manual_seed(0)
        fractions[grouped] = padding_fraction(datamodule.train_dataloader())
    assert fractions[True] < 0.10 < fractions[False]


def test_over_long_sample_is_an_error_naming_it(varied, processor):
    datamodule = _datamodule(varied, max_length=100)
    with pytest.raises(BadSampleError, match=r"train.csv:\d+: sample 's\d+' needs \d+ tokens"):
        datamodule.connect(processor, chat_prompt())


def test_over_long_samples_are_skipped_and_counted(varied, processor):
    datamodule = _datamodule(varied, max_length=100, on_bad_sample="skip")
    datamodule.connect(processor, chat_prompt())
    skipped = datamodule.skipped()
    assert skipped and {item["reason_kind"] for item in skipped} == {"too_long"}
    assert len(datamodule.splits["train"]) + len(skipped) == 48
    assert max(datamodule.lengths["train"]) <= 100
    assert datamodule.summary()["train"]["samples_skipped"] == len(skipped)
    assert {s.id for s in datamodule.splits["train"]}.isdisjoint(item["id"] for item in skipped)
