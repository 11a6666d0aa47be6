"""mmlearn.inference: raw items (text + image bytes, as a client sends them) answered by a trained run
give exactly evaluate.py's predictions for the same rows; bad items are refused naming the field."""

import csv
import io
import json

import pytest
from PIL import Image

from mmlearn.inference import InputError, Item, load_predictor
from tests.conftest import compose, run_script, train_demo_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_qwen2vl, demo_dir):
    return train_demo_run(tmp_path_factory, demo_dir)


@pytest.fixture(scope="module")
def predictor(run, tmp_path_factory):
    overrides = [f"run_dir={run}", "decoding=score"]
    root = tmp_path_factory.mktemp("root")  # outside a Hydra app there is no runtime cwd or output dir
    paths = [f"paths.root_dir={root}", f"paths.output_dir={root / 'out'}"]
    return load_predictor(compose([*overrides, *paths], "evaluate"), overrides)


def _items(demo_dir) -> list[Item]:
    with (demo_dir / "test.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Item(text=r["text"], image=(demo_dir / r["image_path"]).read_bytes(), id=r["id"], name=f"items[{i}]")
        for i, r in enumerate(rows)
    ]


def test_raw_items_get_evaluate_pys_answers(run, predictor, demo_dir, tmp_path):
    out = tmp_path / "eval"
    run_script("evaluate.py", f"run_dir={run}", "decoding=score", f"hydra.run.dir={out}")
    expected = [json.loads(line) for line in (out / "predictions" / "test.jsonl").read_text().splitlines()]
    items = _items(demo_dir)
    records = predictor.answer([predictor.sample(item, i) for i, item in enumerate(items)])
    assert len(records) == len(expected) == 8
    for got, want in zip(records, expected, strict=True):
        assert (got["id"], got["output"], got["parsed"], got["parse_ok"]) == (
            want["id"],
            want["output"],
            want["parsed"],
            want["parse_ok"],
        )
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-6)  # same batch, same kernels
        assert "gold" not in got
    described = predictor.describe()
    assert described["decoding"] == "score" and described["labels"] == predictor.task.labels
    assert described["task"] == "multilabel" and described["modality"] == "text_image"


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_items_are_refused_naming_the_field(predictor):
    with pytest.raises(InputError, match=r"^items\[0\]\.text: required") as err:
        predictor.sample(Item(text="  ", image=_png(8, 8), name="items[0]"))
    assert err.value.field == "items[0].text"
    with pytest.raises(InputError, match=r"^items\[1\]\.image: required"):
        predictor.sample(Item(text="hi", name="items[1]"))
    with pytest.raises(InputError, match=r"^items\[2\]\.image: unreadable image"):
        predictor.sample(Item(text="hi", image=b"not an image at all", name="items[2]"))
    limit = predictor.datamodule.inputs.images.max_pixels
    side = int(limit**0.5) + 1 if limit else 20000
    with pytest.raises(InputError, match=r"over data.max_image_pixels.*refused before decoding"):
        predictor.sample(Item(text="hi", image=_png(side, side), name="items[3]"))
    ok = predictor.sample(Item(text=" hi ", image=_png(8, 8), name="items[4]"), index=4)
    assert ok.text == "hi" and ok.id == "4" and ok.labels == ()
