"""python -m mmlearn.data.convert: any dataset written as a conversation file in each layout, read back by
data=conversations into the same prompts, targets and images (and the same training tokens), and seed
002's ScienceQA written exactly as LLaVA's own converter writes its training files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mmlearn.data.convert import WRITERS, convert
from tests import layouts_conversations as lc
from tests.conftest import REPO, compose

PATHS = ["paths.root_dir=/tmp/mmlearn-convert"]


def csv_overrides(demo: Path) -> list[str]:
    return [
        "data=csv",
        f"data.train_file={demo}/train.csv",
        f"data.val_file={demo}/val.csv",
        f"data.test_file={demo}/test.csv",
        f"data.image_root={demo}",
        f"data.labels_file={demo}/labels.txt",
        *PATHS,
    ]


def setup(overrides: list[str]):
    datamodule = instantiate(compose(overrides).data)
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def qwen(tiny_qwen2vl):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_qwen2vl), instantiate(compose(PATHS).model.prompt)


@pytest.mark.parametrize("fmt", WRITERS)
def test_csv_round_trips_through_each_layout(demo_dir, tmp_path, qwen, fmt):
    out = tmp_path / fmt
    written = convert(csv_overrides(demo_dir), fmt, out)
    assert [p.name for p in written] == [
        f"{s}.{'json' if fmt == 'llava' else 'jsonl'}" for s in ("train", "val", "test")
    ]
    table = setup(csv_overrides(demo_dir))
    files = dict(zip(("train", "val", "test"), written, strict=True))
    back = setup(
        [
            "data=conversations",
            *(f"data.{s}_file={p}" for s, p in files.items()),
            f"data.image_root={out}",
            *PATHS,
        ]
    )
    for split in ("train", "val", "test"):
        a, b = table.splits[split], back.splits[split]
        assert [s.id for s in a] == [s.id for s in b]
        assert [table.task.prompt(s) for s in a] == [back.task.prompt(s) for s in b]
        assert [table.task.answer(s) for s in a] == [back.task.answer(s) for s in b]
        assert [Path(s.image_path).resolve() for s in a] == [Path(s.image_path).resolve() for s in b]
    processor, prompt = qwen
    for datamodule in (table, back):
        datamodule.connect(processor, prompt)
    assert table.lengths["train"] == back.lengths["train"]
    for train in (True, False):  # the training batch, and the evaluation prompt
        ours = back.collator("train", train)(back.splits["train"][:3])["inputs"]
        theirs = table.collator("train", train)(table.splits["train"][:3])["inputs"]
        assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_scienceqa_is_written_as_llavas_own_training_file(tmp_path):
    """data=scienceqa asked as LLaVA asks (prompt_style=llava, no instruction) with the short answer
    gives the user and assistant turns of LLaVA's llava_train_short.json, row for row."""
    root = lc.write_seed002(tmp_path / "scienceqa")
    overrides = [
        "data=scienceqa",
        f"data.root={root}",
        "data.prompt_style=llava",
        "data.instruction=''",
        "data.answer_template='The answer is {letter}.'",
        *PATHS,
    ]
    (written,) = convert(overrides, "llava", tmp_path / "out", ["train"])
    ours = json.loads(written.read_text())
    theirs = json.loads((root / "llava_train_short.json").read_text())
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]
    for mine, llava in zip(ours, theirs, strict=True):
        assert mine["conversations"] == llava["conversations"]
        if "image" in llava:
            assert Path(mine["image"]) == (root / "images" / "train" / llava["image"]).resolve()


def test_the_command_line_writes_the_files(demo_dir, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmlearn.data.convert",
            "--format",
            "openai",
            "--out",
            str(tmp_path),
            "--splits",
            "val",
            *csv_overrides(demo_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "val.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]
    assert rows[0]["messages"][0]["content"][0]["type"] == "image"


def test_an_unknown_split_is_refused_by_name(demo_dir, tmp_path):
    with pytest.raises(ValueError, match=r"--splits \['predict'\] not read by data=csv"):
        convert(csv_overrides(demo_dir), "llava", tmp_path, ["predict"])


def test_images_held_in_a_dataset_are_written_beside_the_files(tmp_path):
    """data=hf reads images from Arrow: the converter writes them under DIR/images/, and the files read
    back into the same prompts, targets and pixels."""
    from tests.layouts_more import write_hf_saved

    root = write_hf_saved(tmp_path / "saved", tmp_path / "scratch")
    overrides = [
        "data=hf",
        f"data.root={root}",
        "data.image_column=picture",
        "data.label_column=target",
        "data.text_column=caption",
        *PATHS,
    ]
    out = tmp_path / "out"
    written = dict(zip(("train", "val", "test"), convert(overrides, "sharegpt", out), strict=True))
    table = setup(overrides)
    back = setup(
        [
            "data=conversations",
            *(f"data.{s}_file={p}" for s, p in written.items()),
            f"data.image_root={out}",
            *PATHS,
        ]
    )
    a, b = table.splits["train"], back.splits["train"]
    assert [table.task.prompt(s) for s in a] == [back.task.prompt(s) for s in b]
    assert [table.task.answer(s) for s in a] == [back.task.answer(s) for s in b]
    for x, y in zip(a, b, strict=True):
        assert y.image_path.is_relative_to(out / "images" / "train")
        assert list(table.inputs.load_rgb(x.image_path).getdata()) == list(
            back.inputs.load_rgb(y.image_path).getdata()
        )
