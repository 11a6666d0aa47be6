"""MMHS150K, CrisisMMD and Hateful Memes read from small copies of their original layouts
(tests/layouts.py): exact counts per split, label rules, merges, dedup, OCR, modalities and bad input."""

import json
import shutil

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mmlearn.data.datasets.hateful_memes import UnlabelledFileError
from mmlearn.data.sample import BadSampleError
from tests import layouts
from tests.conftest import compose, run_script

HUM = "crisismmd_humanitarian"
INF = "crisismmd_informative"


def _datamodule(data, root, *overrides):
    cfg = compose(
        [f"data={data}", f"data.root={root}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o", *overrides]
    )
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup()
    return datamodule


def _counts(summary):
    """split -> (samples kept, label counts), the part of data_summary.json the tests pin down."""
    return {s: (v["samples_kept"], v["label_counts"]) for s, v in summary.items() if s != "settings"}


@pytest.fixture
def mmhs(tmp_path):
    return layouts.write_mmhs150k(tmp_path / "mmhs150k")


@pytest.fixture
def crisis(tmp_path):
    return layouts.write_crisismmd(tmp_path / "crisismmd")


@pytest.fixture
def memes(tmp_path):
    return layouts.write_hateful_memes(tmp_path / "hateful_memes")


# --- MMHS150K ------------------------------------------------------------------------------------------
MMHS_EXPECTED = {
    "union": {
        "train": (5, {"racist": 1, "sexist": 1, "homophobe": 1, "otherhate": 1, "religion": 1}),
        "val": (3, {"racist": 1, "sexist": 1, "homophobe": 1}),
        "test": (3, {"sexist": 1, "otherhate": 1, "homophobe": 1, "racist": 1}),
    },
    "majority": {
        "train": (5, {"racist": 1, "religion": 1}),
        "val": (3, {"racist": 1}),
        "test": (3, {"sexist": 1, "homophobe": 1}),
    },
    "binary": {
        "train": (5, {"not_hate": 2, "hate": 3}),
        "val": (3, {"hate": 1, "not_hate": 2}),
        "test": (3, {"hate": 2, "not_hate": 1}),
    },
}
# per-sample targets of the train split, by rule: [0,0,0] [1,1,0] [2,3,0] [5,0,0] [4,4,4]
MMHS_TRAIN_TARGETS = {
    "union": [(), ("racist",), ("sexist", "homophobe"), ("otherhate",), ("religion",)],
    "majority": [(), ("racist",), (), (), ("religion",)],
    "binary": [("not_hate",), ("hate",), ("hate",), ("not_hate",), ("hate",)],
}


@pytest.mark.parametrize("rule", ["union", "majority", "binary"])
def test_mmhs150k_label_rules(mmhs, rule):
    dm = _datamodule("mmhs150k", mmhs, f"data.label_rule={rule}")
    summary = dm.summary()
    assert _counts(summary) == MMHS_EXPECTED[rule]
    assert [s.labels for s in dm.splits["train"]] == MMHS_TRAIN_TARGETS[rule]
    assert summary["settings"]["label_rule"] == rule
    assert dm.task.kind == ("multiclass" if rule == "binary" else "multilabel")
    assert [s.id for s in dm.splits["val"]] == [r[0] for r in layouts.MMHS_SPLITS["val"]]


def test_mmhs150k_ocr_is_appended_only_when_asked_and_present(mmhs):
    plain = _datamodule("mmhs150k", mmhs)
    with_ocr = _datamodule("mmhs150k", mmhs, "data.use_ocr=true")
    texts = {s.id: s.text for s in with_ocr.splits["train"]}
    assert texts["1063020048816660480"] == (
        "RT @user: you people again \U0001f602 https://t.co/aaaa\nText in the image: GO HOME"
    )
    assert texts["1035252480215592966"] == "@another they pray wrong https://t.co/dddd"  # empty OCR
    assert texts["1114679353714016256"] == plain.splits["train"][0].text  # no OCR file
    assert with_ocr.summary()["settings"]["ocr_attached"] == {"train": 1, "val": 1, "test": 1}
    assert plain.summary()["settings"]["ocr_attached"] == {"train": 0, "val": 0, "test": 0}
    assert all("Text in the image" not in s.text for s in plain.splits["train"])


def test_mmhs150k_modalities(mmhs):
    image_only = _datamodule("mmhs150k", mmhs, "modality=image", "data.use_ocr=true")
    assert all(s.text is None and s.image_path.is_file() for s in image_only.splits["train"])
    shutil.rmtree(mmhs / "img_resized")
    text_only = _datamodule("mmhs150k", mmhs, "modality=text")
    assert _counts(text_only.summary()) == MMHS_EXPECTED["union"]
    assert all(s.image_path is None and s.text for s in text_only.splits["test"])


def _set_labels(root, tweet_id, labels):
    path = root / "MMHS150K_GT.json"
    data = json.loads(path.read_text())
    data[tweet_id]["labels"] = labels
    path.write_text(json.dumps(data))


def _append(path, text):
    path.write_text(path.read_text() + text)


MMHS_BAD = {
    "id_missing_from_gt": (
        lambda root: _append(root / "splits" / "val_ids.txt", "1999999999999999999\n"),
        "val",
        "splits/val_ids.txt:4: tweet id '1999999999999999999' is not a key of {root}/MMHS150K_GT.json",
    ),
    "label_out_of_range": (
        lambda root: _set_labels(root, "1108927368075374593", [2, 7, 0]),
        "train",
        "splits/train_ids.txt:3: {root}/MMHS150K_GT.json['1108927368075374593']['labels']: label id(s) [7]",
    ),
    "two_annotators": (
        lambda root: _set_labels(root, "1059489532425736192", [0, 1]),
        "test",
        "splits/test_ids.txt:3: {root}/MMHS150K_GT.json['1059489532425736192']['labels'] must list 3",
    ),
    "missing_image": (
        lambda root: (root / "img_resized" / "1106627244315623424.jpg").unlink(),
        "val",
        "splits/val_ids.txt:2: image not found: {root}/img_resized/1106627244315623424.jpg",
    ),
}


@pytest.mark.parametrize("case", sorted(MMHS_BAD))
def test_mmhs150k_bad_input_names_file_and_row_or_is_skipped(mmhs, case):
    damage, split, message = MMHS_BAD[case]
    damage(mmhs)
    with pytest.raises(BadSampleError) as err:
        _datamodule("mmhs150k", mmhs)
    assert message.format(root=mmhs) in str(err.value)
    dm = _datamodule("mmhs150k", mmhs, "data.on_bad_sample=skip")
    report = dm.summary()[split]
    assert report["samples_skipped"] == 1 and report["samples_kept"] == report["samples_read"] - 1
    (skipped,) = dm.skipped()
    assert skipped["split"] == split and message.split(": ", 1)[0] in skipped["source"]


def test_mmhs150k_malformed_ocr_is_an_error(mmhs):
    (mmhs / "img_txt" / "1063020048816660480.json").write_text('{"img_text": "GO HO')
    with pytest.raises(BadSampleError, match=r"train_ids.txt:2: .*img_txt/1063020048816660480.json"):
        _datamodule("mmhs150k", mmhs, "data.use_ocr=true")
    _datamodule("mmhs150k", mmhs)  # never opened without use_ocr


# --- CrisisMMD -----------------------------------------------------------------------------------------
CRISIS_EXPECTED = {
    (INF, "per_image"): {
        "train": (5, {"informative": 3, "not_informative": 2}),
        "val": (3, {"informative": 1, "not_informative": 2}),
        "test": (2, {"informative": 1, "not_informative": 1}),
    },
    (INF, "text"): {
        "train": (4, {"informative": 2, "not_informative": 2}),
        "val": (2, {"informative": 1, "not_informative": 1}),
        "test": (2, {"informative": 1, "not_informative": 1}),
    },
    (HUM, "per_image"): {
        "train": (
            7,
            {
                "affected_individuals": 4,
                "infrastructure_and_utility_damage": 1,
                "rescue_volunteering_or_donation_effort": 1,
                "not_humanitarian": 1,
            },
        ),
        "val": (
            3,
            {"other_relevant_information": 1, "not_humanitarian": 1, "infrastructure_and_utility_damage": 1},
        ),
        "test": (
            4,
            {
                "rescue_volunteering_or_donation_effort": 1,
                "not_humanitarian": 1,
                "other_relevant_information": 2,
            },
        ),
    },
    (HUM, "text"): {
        "train": (
            6,
            {
                "affected_individuals": 3,
                "infrastructure_and_utility_damage": 1,
                "rescue_volunteering_or_donation_effort": 1,
                "not_humanitarian": 1,
            },
        ),
        "val": (
            3,
            {"other_relevant_information": 1, "not_humanitarian": 1, "infrastructure_and_utility_damage": 1},
        ),
        "test": (
            3,
            {
                "rescue_volunteering_or_donation_effort": 1,
                "not_humanitarian": 1,
                "other_relevant_information": 1,
            },
        ),
    },
}
CRISIS_MERGED = {INF: {"train": 1, "val": 1, "test": 0}, HUM: {"train": 1, "val": 0, "test": 1}}


@pytest.mark.parametrize("data", [INF, HUM])
@pytest.mark.parametrize("modality", ["text", "image", "text_image"])
def test_crisismmd_counts_per_modality(crisis, data, modality):
    dm = _datamodule(data, crisis, f"modality={modality}")
    summary = dm.summary()
    per = "text" if modality == "text" else "per_image"
    assert _counts(summary) == CRISIS_EXPECTED[data, per]
    merged = CRISIS_MERGED[data] if modality == "text" else {"train": 0, "val": 0, "test": 0}
    assert {s: summary[s]["rows_merged"] for s in ("train", "val", "test")} == merged
    assert summary["settings"]["label_column"] == ("label_image" if modality == "image" else "label_text")
    samples = dm.splits["train"]
    assert all((s.text is None) == (modality == "image") for s in samples)
    assert all((s.image_path is None) == (modality == "text") for s in samples)
    ids = [s.id for s in samples]
    assert ("905952332923338752" in ids) == (modality == "text")
    assert ("905952332923338752_1" in ids) == (modality != "text")


def test_crisismmd_text_keeps_quotes_verbatim(crisis):
    dm = _datamodule(INF, crisis, "modality=text")
    assert dm.splits["train"][0].text == 'RT @KHOU: "Water is rising fast" #Harvey https://t.co/a1'
    assert dm.splits["val"][1].text == "lol 'Irma' party tonight"


def test_crisismmd_text_only_never_opens_an_image(crisis):
    shutil.rmtree(crisis / "data_image")
    dm = _datamodule(HUM, crisis, "modality=text")
    assert _counts(dm.summary()) == CRISIS_EXPECTED[HUM, "text"]
    with pytest.raises(BadSampleError, match="image not found"):
        _datamodule(HUM, crisis, "modality=image")


def _edit_tsv(crisis, task, split, line, column, value):
    path = crisis / layouts.CRISIS_SPLIT_DIR / f"task_{task}_text_img_agreed_lab_{split}.tsv"
    lines = path.read_text().split("\n")
    fields = lines[line - 1].split("\t")
    fields[layouts.CRISIS_COLUMNS.index(column)] = value
    lines[line - 1] = "\t".join(fields)
    path.write_text("\n".join(lines))
    return path


def test_crisismmd_image_only_uses_label_image(crisis):
    _edit_tsv(crisis, "informative", "test", 2, "label_image", "not_informative")
    image = _datamodule(INF, crisis, "modality=image").summary()["test"]["label_counts"]
    text_image = _datamodule(INF, crisis, "modality=text_image").summary()["test"]["label_counts"]
    assert image == {"not_informative": 2}
    assert text_image == {"informative": 1, "not_informative": 1}


def test_crisismmd_merge_map_lives_in_config(crisis):
    cfg = compose([f"data={HUM}", f"data.root={crisis}", "paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"])
    cfg.data.label_merge = {}  # an override of a dict merges into it; replace it here
    with pytest.raises(BadSampleError, match="unknown label 'injured_or_dead_people' in column label_text"):
        instantiate(cfg.data, _convert_="all").setup()
    with pytest.raises(InstantiationException, match=r"outside data\.labels"):
        _datamodule(HUM, crisis, "data.label_merge.vehicle_damage=cars")
    dm = _datamodule(HUM, crisis, "data.label_merge.vehicle_damage=other_relevant_information")
    assert dm.summary()["train"]["label_counts"]["other_relevant_information"] == 1
    assert "infrastructure_and_utility_damage" not in dm.summary()["train"]["label_counts"]


def test_crisismmd_text_dedup_requires_agreeing_labels(crisis):
    path = _edit_tsv(crisis, "informative", "dev", 4, "label_text", "informative")
    with pytest.raises(BadSampleError) as err:
        _datamodule(INF, crisis, "modality=text")
    assert f"{path}:4: tweet 907258931163201536 is labelled 'informative' here but 'not_informative'" in str(
        err.value
    )
    assert f"at {path}:3" in str(err.value)
    # one sample per image: the two rows are two samples, no disagreement to settle
    assert _datamodule(INF, crisis, "modality=text_image").summary()["val"]["samples_kept"] == 3


CRISIS_BAD = {
    "unknown_label": (
        lambda c: _edit_tsv(c, "humanitarian", "train", 5, "label_text", "flood_damage"),
        "train",
        5,
        "unknown label 'flood_damage'",
        "row",
    ),
    "malformed_row": (
        lambda c: _edit_tsv(c, "humanitarian", "dev", 3, "tweet_text", "wine\ttasting"),
        "dev",
        3,
        "malformed row: 10 fields, header has 9",
        "row",
    ),
    "missing_image": (
        lambda c: (c / "data_image/hurricane_maria/8_9_2017/915555555555555555_0.jpg").unlink(),
        "test",
        2,
        "image not found",
        "image",
    ),
}


@pytest.mark.parametrize("case", sorted(CRISIS_BAD))
def test_crisismmd_bad_input_names_file_and_row_or_is_skipped(crisis, case):
    damage, split, line, message, kind = CRISIS_BAD[case]
    damage(crisis)
    path = crisis / layouts.CRISIS_SPLIT_DIR / f"task_humanitarian_text_img_agreed_lab_{split}.tsv"
    with pytest.raises(BadSampleError, match=message) as err:
        _datamodule(HUM, crisis)
    assert f"{path}:{line}: " in str(err.value)
    summary = _datamodule(HUM, crisis, "data.on_bad_sample=skip").summary()
    ours = {"dev": "val"}.get(split, split)
    assert summary[ours]["samples_skipped"] == 1 and summary[ours]["skipped_by_reason"] == {kind: 1}


# --- Hateful Memes -------------------------------------------------------------------------------------
MEMES_EXPECTED = {
    "train": (4, {"not_hateful": 2, "hateful": 2}),
    "val": (2, {"hateful": 1, "not_hateful": 1}),
    "test": (2, {"hateful": 1, "not_hateful": 1}),
}


def test_hateful_memes_reads_the_release_layout(memes):
    assert (memes / "train.jsonl").read_text().startswith('{"id":42953,"img":"img\\/42953.png","label":0,')
    dm = _datamodule("hateful_memes", memes)
    assert _counts(dm.summary()) == MEMES_EXPECTED
    sample = dm.splits["train"][2]
    assert (sample.id, sample.labels, sample.image_path) == (
        "1765",
        ("hateful",),
        memes / "img" / "01765.png",
    )
    assert dm.splits["train"][3].text == 'when "they" move in next door'


def test_hateful_memes_older_file_names_are_configurable(tmp_path):
    files = dict(layouts.MEMES)
    files["dev.jsonl"], files["test.jsonl"] = files.pop("dev_seen.jsonl"), files.pop("test_seen.jsonl")
    root = layouts.write_hateful_memes(tmp_path / "hm_old", files)
    with pytest.raises(FileNotFoundError, match=r"dev_seen\.jsonl"):
        _datamodule("hateful_memes", root)
    dm = _datamodule(
        "hateful_memes", root, "data.split_files={train: train.jsonl, val: dev.jsonl, test: test.jsonl}"
    )
    assert _counts(dm.summary()) == MEMES_EXPECTED


def test_hateful_memes_unlabelled_file_is_refused_for_training_and_evaluation(memes):
    for mode in ("error", "skip"):
        with pytest.raises(UnlabelledFileError) as err:
            _datamodule(
                "hateful_memes",
                memes,
                "data.split_files.test=test_unseen.jsonl",
                f"data.on_bad_sample={mode}",
            )
        assert f"{memes}/test_unseen.jsonl is unlabelled" in str(err.value) and "predict_file" in str(
            err.value
        )


def test_hateful_memes_unlabelled_row_names_file_and_row_or_is_skipped(memes):
    _append(memes / "train.jsonl", layouts.meme_line(10487, "this is what i call a real man", None) + "\n")
    with pytest.raises(BadSampleError, match=f"{memes}/train.jsonl:5: unlabelled row"):
        _datamodule("hateful_memes", memes)
    summary = _datamodule("hateful_memes", memes, "data.on_bad_sample=skip").summary()
    assert (summary["train"]["samples_read"], summary["train"]["samples_skipped"]) == (5, 1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id":99,"img":"img\\/00099.png","label":2,"text":"x"}', "label must be 0 or 1, got 2"),
        ('{"id":99,"img":"img\\/00099.png","label":1,"te', "malformed JSON line"),
        ('{"id":99,"img":"img\\/00099.png","label":1,"text":"x"}', "image not found"),
    ],
)
def test_hateful_memes_bad_rows(memes, line, message):
    _append(memes / "dev_seen.jsonl", line + "\n")
    with pytest.raises(BadSampleError, match=message) as err:
        _datamodule("hateful_memes", memes)
    assert f"{memes}/dev_seen.jsonl:3: " in str(err.value)


def test_hateful_memes_predict_file_yields_samples_without_gold_labels(memes, tiny_qwen2vl):
    dm = _datamodule("hateful_memes", memes, "data.predict_file=test_unseen.jsonl")
    summary = dm.summary()
    assert _counts({k: v for k, v in summary.items() if k != "predict"}) == MEMES_EXPECTED
    assert [(s.id, s.labels) for s in dm.splits["predict"]] == [("10487", ()), ("4587", ())]
    assert summary["predict"]["samples_kept"] == 2 and summary["predict"]["label_counts"] == {}
    assert summary["settings"]["predict_file"] == str(memes / "test_unseen.jsonl")
    spec = instantiate(compose(["paths.root_dir=/tmp/x", "paths.output_dir=/tmp/o"]).model, _convert_="all")
    dm.connect(spec.load_processor(), spec.prompt)
    (batch,) = list(dm.predict_dataloader())
    assert batch["ids"] == ["10487", "4587"] and "pixel_values" in batch["inputs"]


# --- end to end ----------------------------------------------------------------------------------------
def _train(run_dir, data, root, *overrides):
    run_script(
        "train.py",
        f"data={data}",
        f"data.root={root}",
        "model=qwen2vl_tiny",
        "trainer.max_steps=2",
        "logger=csv",
        "data.batch_size=2",
        "data.eval_batch_size=4",
        f"hydra.run.dir={run_dir}",
        *overrides,
    )
    assert (run_dir / "metrics.json").is_file()
    return json.loads((run_dir / "data_summary.json").read_text())


@pytest.mark.slow
def test_end_to_end_mmhs150k(tmp_path, tiny_qwen2vl, mmhs):
    summary = _train(tmp_path / "run", "mmhs150k", mmhs, "data.use_ocr=true", "data.label_rule=majority")
    assert _counts(summary) == MMHS_EXPECTED["majority"]
    assert summary["settings"]["label_rule"] == "majority"
    assert summary["settings"]["ocr_attached"] == {"train": 1, "val": 1, "test": 1}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "modality"),
    [(INF, "text_image"), (HUM, "text"), (HUM, "image")],
    ids=["inf-ti", "hum-t", "hum-i"],
)
def test_end_to_end_crisismmd(tmp_path, tiny_qwen2vl, crisis, data, modality):
    if modality == "text":
        shutil.rmtree(crisis / "data_image")
    summary = _train(tmp_path / "run", data, crisis, f"modality={modality}")
    per = "text" if modality == "text" else "per_image"
    assert _counts(summary) == CRISIS_EXPECTED[data, per]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test/accuracy", "test/f1_weighted"} <= set(metrics)
    predictions = [
        json.loads(x) for x in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()
    ]
    assert len(predictions) == CRISIS_EXPECTED[data, per]["test"][0]


@pytest.mark.slow
def test_end_to_end_hateful_memes(tmp_path, tiny_qwen2vl, memes):
    summary = _train(tmp_path / "run", "hateful_memes", memes)
    assert _counts(summary) == MEMES_EXPECTED
    # the unseen file through the CLI: answers for every row, no gold, no metrics beyond parsing
    evaluated = tmp_path / "predict"
    run_script(
        "evaluate.py",
        f"run_dir={tmp_path / 'run'}",
        "split=predict",
        "predict_file=test_unseen.jsonl",
        "decoding=constrained",
        f"hydra.run.dir={evaluated}",
    )
    rows = [json.loads(x) for x in (evaluated / "predictions" / "predict.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["10487", "4587"]
    assert all(
        "gold" not in r and r["parse_ok"] and r["parsed"][0] in ("not_hateful", "hateful") for r in rows
    )
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["predict/parse_failure_rate"] == 0.0 and metrics["predict/samples_per_second"] > 0
    assert not (evaluated / "per_class.csv").exists()  # nothing to score against


def test_predict_split_needs_an_unlabelled_file(tmp_path):
    from mmlearn.evaluation import with_predict_file

    with pytest.raises(ValueError, match="split=predict needs predict_file="):
        with_predict_file(compose(["data=hateful_memes"], "evaluate"), None)
    with pytest.raises(ValueError, match="data=mmhs150k reads no unlabelled file"):
        with_predict_file(compose(["data=mmhs150k"], "evaluate"), "x.jsonl")
    chosen = with_predict_file(compose(["data=hateful_memes"], "evaluate"), "test_unseen.jsonl")
    assert chosen.data.predict_file == "test_unseen.jsonl"
