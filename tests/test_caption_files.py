"""caption.py: one caption per image of every split into a captions CSV with its sidecar; a run stopped
mid-way continues without recomputing; a reader trains on the written captions (data.captions_file)."""

import csv
import json

import pytest

from mmlearn.captions import caption
from tests import layouts_more as layouts
from tests.conftest import compose, run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def perceptsent(tmp_path_factory):
    return layouts.write_perceptsent(tmp_path_factory.mktemp("perceptsent"))


def _overrides(root, output, *more):
    return ["data=perceptsent", "modality=image", f"data.root={root}", "data.val_fraction=0.25",
            "data.eval_batch_size=4", "max_new_tokens=6", f"output={output}", *more]  # fmt: skip


def _cfg(tmp_path, overrides):
    paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'out'}"]
    return compose([*overrides, *paths], "caption")


def _rows(path):
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_a_stopped_run_continues_without_recomputing(tmp_path, tiny_qwen2vl, perceptsent, monkeypatch):
    import mmlearn.captions.run as run

    output = tmp_path / "captions.csv"
    overrides = _overrides(perceptsent, output)
    real, calls = run.generate_answers, []

    def stops_after_two_batches(context, inputs, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after two batches were written
        calls.append(len(inputs["input_ids"]))
        return real(context, inputs, **kwargs)

    monkeypatch.setattr(run, "generate_answers", stops_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        caption(_cfg(tmp_path, overrides), overrides)
    assert not output.exists() and len((tmp_path / "captions.csv.part").read_text().splitlines()) == 8
    calls.clear()
    monkeypatch.setattr(
        run, "generate_answers", lambda c, i, **k: calls.append(len(i["input_ids"])) or real(c, i, **k)
    )
    sidecar = caption(_cfg(tmp_path, overrides), overrides)
    rows = _rows(output)
    assert len(rows) == sidecar["images"] == 22  # PerceptSent's small copy keeps 22 images (P5, alpha 3)
    assert sum(calls) == 22 - 8 and sidecar["captioned_before_restart"] == 8
    assert len({r["id"] for r in rows}) == 22 and not (tmp_path / "captions.csv.part").exists()
    written = json.loads((tmp_path / "captions.csv.json").read_text())
    assert written["prompt"] == "Describe this image in one sentence." and written["model"] == "qwen2vl_tiny"
    assert (
        written["generate_kwargs"]["max_new_tokens"] == 6 and written["generate_kwargs"]["do_sample"] is False
    )


def test_the_user_command_writes_captions_a_reader_trains_on(tmp_path, tiny_qwen2vl, perceptsent):
    output = tmp_path / "captions.csv"
    run_script("caption.py", *_overrides(perceptsent, output, 'prompt="What is in this photo?"'),
               f"hydra.run.dir={tmp_path / 'job'}")  # fmt: skip
    rows = _rows(output)
    assert len(rows) == 22 and list(rows[0]) == ["id", "text"]
    assert json.loads((tmp_path / "captions.csv.json").read_text())["prompt"] == "What is in this photo?"
    empty = sum(not r["text"] for r in rows)
    run = tmp_path / "train"
    out = run_script(
        "train.py", "logger=csv", "data=perceptsent", "modality=text", f"data.root={perceptsent}",
        "data.val_fraction=0.25", f"data.captions_file={output}", "data.on_bad_sample=skip",
        "trainer.max_steps=2", "data.batch_size=4", f"hydra.run.dir={run}",
    )  # fmt: skip
    summary = json.loads((run / "data_summary.json").read_text())
    kept = sum(summary[s]["samples_kept"] for s in ("train", "val", "test"))
    assert kept == 22 - empty, out.stdout[-2000:]


def test_decoding_settings_do_not_apply_and_say_so(tmp_path, perceptsent):
    overrides = _overrides(perceptsent, tmp_path / "c.csv", "decoding.extra_new_tokens=9")
    with pytest.raises(ValueError, match=r"decoding.extra_new_tokens does not apply \(set max_new_tokens"):
        caption(_cfg(tmp_path, overrides), overrides)
