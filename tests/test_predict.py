"""predict.py: new rows (a CSV/JSONL table without labels, or a folder of images) answered by a run exactly
as `evaluate.py split=predict` answers them; bad rows stop the run naming file:row or are skipped and
listed; the answers are streamed to a part file, so a run killed midway continues without recomputing."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from PIL import Image

from mmlearn.data.modality import Modality
from mmlearn.data.policy import InputPolicy
from mmlearn.prediction import PartFile, read_input
from mmlearn.prediction.outputs import to_csv
from mmlearn.tasks import MultiLabelTask
from tests.conftest import REPO, compose, run_script, train_demo_run

INPUTS = InputPolicy.from_config(
    on_bad_sample="error", encoding="utf-8", max_image_pixels=10**6, image_background=[255, 255, 255]
)
TASK = MultiLabelTask(["red", "blue"], "Labels: {labels}.")
KEY = {"input": "/data/new.csv", "input_sha256": "abc", "decoding": {"_target_": "x.ScoreDecoder"}}


def _png(path, colour=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _modality(name: str) -> Modality:
    return Modality(name)


# --- the part file ----------------------------------------------------------------------------------


def test_a_killed_runs_half_written_last_line_is_cut_and_its_row_answered_again(tmp_path):
    output = tmp_path / "answers.jsonl"
    part = PartFile(output, KEY, resume=True)
    part.append([{"id": "a"}, {"id": "b"}])
    part.close()
    with part.path.open("ab") as handle:  # the kill came while the third line was being written
        handle.write(b'{"id": "c", "outp')
    again = PartFile(output, KEY, resume=True)
    assert [r["id"] for r in again.records] == ["a", "b"]
    assert part.path.read_bytes().endswith(b'{"id": "b"}\n')  # the fragment is gone from the file
    again.append([{"id": "c"}])
    again.close()
    assert [json.loads(line)["id"] for line in part.path.read_text().splitlines()] == ["a", "b", "c"]


def test_a_part_file_of_other_input_is_refused_naming_what_changed_and_resume_false_starts_over(tmp_path):
    output = tmp_path / "answers.jsonl"
    part = PartFile(output, KEY, resume=True)
    part.append([{"id": "a"}])
    part.close()
    with pytest.raises(
        ValueError, match=r"answers\.jsonl\.part was left by .*\(input_sha256 differ\).*resume=false"
    ):
        PartFile(output, {**KEY, "input_sha256": "changed"}, resume=True)
    fresh = PartFile(output, {**KEY, "input_sha256": "changed"}, resume=False)
    fresh.close()
    assert fresh.records == [] and part.path.read_text() == ""
    assert json.loads(fresh.key_path.read_text())["input_sha256"] == "changed"
    fresh.discard()
    assert not part.path.exists() and not fresh.key_path.exists()


# --- what is read -----------------------------------------------------------------------------------


def test_a_folder_gives_its_images_sorted_with_relative_paths_as_ids(tmp_path):
    for name in ("b.png", "a.jpg", "sub/c.png", "sub/deeper/a.png"):
        _png(tmp_path / "imgs" / name)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    _png(tmp_path / "imgs" / ".hidden" / "x.png")
    samples, report = read_input(tmp_path / "imgs", task=TASK, modality=_modality("image"), inputs=INPUTS)
    assert [s.id for s in samples] == ["a.jpg", "b.png", "sub/c.png", "sub/deeper/a.png"]
    assert samples[2].image_path == tmp_path / "imgs" / "sub" / "c.png" and samples[0].text is None
    assert report.read == 4 and not report.skipped
    with pytest.raises(ValueError, match=r"no text, but the run's modality is text_image.*modality=image"):
        read_input(tmp_path / "imgs", task=TASK, modality=_modality("text_image"), inputs=INPUTS)


def test_a_folder_image_that_does_not_decode_is_a_bad_row(tmp_path):
    _png(tmp_path / "imgs" / "good.png")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"imgs/broken\.png: .*data\.on_bad_sample=skip"):
        read_input(tmp_path / "imgs", task=TASK, modality=_modality("image"), inputs=INPUTS)


def _table(folder, rows, name="new.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "image_path"])
        writer.writeheader()
        writer.writerows(rows)
    return folder / name


def test_a_table_is_read_as_data_csv_reads_it_without_labels(tmp_path):
    _png(tmp_path / "new" / "images" / "0.png")
    rows = [{"id": "x", "text": "hello", "image_path": "images/0.png"}]
    path = _table(tmp_path / "new", [*rows, {"id": "y", "text": "", "image_path": "images/0.png"}])
    with pytest.raises(ValueError, match=rf"{path}:3: empty text"):
        read_input(path, task=TASK, modality=_modality("text_image"), inputs=INPUTS)
    skip = InputPolicy("skip", INPUTS.encoding, INPUTS.images)
    samples, report = read_input(path, task=TASK, modality=_modality("text_image"), inputs=skip)
    assert [(s.id, s.text, s.labels) for s in samples] == [("x", "hello", ())]
    assert samples[0].image_path == tmp_path / "new" / "images" / "0.png"  # under the table's folder
    assert [r["source"] for r in report.skipped] == [f"{path}:3"]
    (tmp_path / "notes.txt").write_text("text, image_path\n")
    with pytest.raises(ValueError, match=r"input=.*notes\.txt: expected a \.csv or \.jsonl file"):
        read_input(tmp_path / "notes.txt", task=TASK, modality=_modality("text"), inputs=INPUTS)
    with pytest.raises(FileNotFoundError, match=r"input=.*gone\.csv not found"):
        read_input(tmp_path / "gone.csv", task=TASK, modality=_modality("text"), inputs=INPUTS)


def test_csv_answers_have_parsed_as_json_and_one_score_column_per_label():
    records = [
        {"id": "1", "output": '["red"]', "parsed": ["red"], "parse_ok": True, "scores": {"red": 0.9, "blue": 0.2}},
        {"id": "2", "output": "??", "parsed": None, "parse_ok": False, "scores": {"red": 0.1, "blue": 0.3}},
    ]  # fmt: skip
    rows = list(csv.DictReader(to_csv(records, ["red", "blue"]).splitlines()))
    assert list(rows[0]) == ["id", "output", "parsed", "parse_ok", "prompt_id", "scores.red", "scores.blue"]
    assert (
        rows[0]["parsed"] == '["red"]' and rows[0]["scores.red"] == "0.9" and rows[1]["parse_ok"] == "false"
    )
    assert "scores.red" not in to_csv([{**records[0], "scores": None}], ["red", "blue"])


def test_predict_yaml_composes_evaluate_and_names_its_missing_keys(tmp_path):
    cfg = compose(["paths.root_dir=/tmp/x", "input=a.csv", "output=b.jsonl", "decoding=score"], "predict")
    assert cfg.task_name == "predict" and cfg.resume is True and cfg.image_root is None
    assert cfg.data.name == "demo" and cfg.decoding._target_.endswith(
        "ScoreDecoder"
    )  # evaluate.yaml's groups
    out = run_script("predict.py", f"hydra.run.dir={tmp_path}", check=False, timeout=300)
    assert out.returncode != 0 and "input, output" in out.stderr, out.stderr[-2000:]


# --- end to end on a trained run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_qwen2vl, demo_dir):
    return train_demo_run(tmp_path_factory, demo_dir)


@pytest.fixture(scope="module")
def new_rows(tmp_path_factory, demo_dir):
    """The demo's test rows as new data: no labels, ids of their own, images copied beside the table."""
    folder = tmp_path_factory.mktemp("new")
    shutil.copytree(demo_dir / "images", folder / "images")
    rows = list(csv.DictReader((demo_dir / "test.csv").open(encoding="utf-8")))
    return _table(
        folder, [{"id": f"new-{r['id']}", "text": r["text"], "image_path": r["image_path"]} for r in rows]
    )


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _predict(run, tmp_path, *overrides, name="answers.jsonl"):
    """predict.py in this process (a Hydra app's job): the summary and the answers."""
    from mmlearn.prediction import predict

    line = [
        f"run_dir={run}",
        "decoding=score",
        f"output={tmp_path / name}",
        f"paths.output_dir={tmp_path / 'job'}",
        f"paths.root_dir={tmp_path}",
    ]
    line += list(overrides)
    summary = predict(compose(line, "predict"), line)
    return summary, tmp_path / name


@pytest.mark.slow
def test_the_users_command_gives_evaluate_split_predicts_answers(run, new_rows, tmp_path):
    answers = tmp_path / "answers.jsonl"
    common = [f"run_dir={run}", "decoding=score", "data.eval_batch_size=3"]
    run_script(
        "predict.py", *common, f"input={new_rows}", f"output={answers}", f"hydra.run.dir={tmp_path / 'p'}"
    )
    run_script(
        "evaluate.py", *common, "split=predict", f"predict_file={new_rows}",
        f"data.image_root={new_rows.parent}", f"hydra.run.dir={tmp_path / 'e'}",
    )  # fmt: skip
    want = _lines(tmp_path / "e" / "predictions" / "predict.jsonl")
    got = _lines(answers)
    assert [r["id"] for r in got] == [f"new-test-{i}" for i in range(8)] == [r["id"] for r in want]
    for mine, theirs in zip(got, want, strict=True):
        assert {k: mine[k] for k in mine if k != "scores"} == {k: theirs[k] for k in theirs if k != "scores"}
        assert mine["scores"] == pytest.approx(theirs["scores"], abs=1e-6)  # same batches, same kernels
    summary = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert (summary["rows_read"], summary["answered"], summary["skipped"]) == (8, 8, 0)
    assert (
        not (tmp_path / "answers.jsonl.part").exists() and not (tmp_path / "answers.jsonl.part.json").exists()
    )
    _, as_csv = _predict(run, tmp_path, f"input={new_rows}", "data.eval_batch_size=3", name="answers.csv")
    rows = list(csv.DictReader(as_csv.open(encoding="utf-8")))
    assert [(r["id"], r["output"], json.loads(r["parsed"])) for r in rows] == [
        (r["id"], r["output"], r["parsed"]) for r in got
    ]
    assert float(rows[0]["scores.red"]) == pytest.approx(got[0]["scores"]["red"], abs=1e-6)


@pytest.mark.slow
def test_a_folder_of_images_is_answered_image_only_ids_its_relative_paths(run, new_rows, tmp_path):
    images = sorted((new_rows.parent / "images").iterdir())[:3]
    for image, name in zip(images, ("b/x.png", "a.png", "c/d/y.png"), strict=True):
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, tmp_path / "imgs" / name)
    summary, answers = _predict(run, tmp_path, f"input={tmp_path / 'imgs'}", "modality=image")
    records = _lines(answers)
    assert [r["id"] for r in records] == ["a.png", "b/x.png", "c/d/y.png"] and summary["answered"] == 3
    assert summary["run"]["modality"] == "image"
    assert all(set(r["scores"]) == {"red", "blue", "urgent", "question"} for r in records)


KILLER = """
import os, signal, sys
from mmlearn.decoding import ScoreDecoder
decode, calls = ScoreDecoder.decode, [0]
def killing(self, context, batch):
    calls[0] += 1
    if calls[0] > int(os.environ["KILL_AFTER_CALLS"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return decode(self, context, batch)
ScoreDecoder.decode = killing
sys.argv = ["predict.py", *sys.argv[1:]]
import runpy
runpy.run_path("predict.py", run_name="__main__")
"""


@pytest.mark.slow
def test_a_run_killed_midway_restarts_and_answers_only_the_rows_not_written(
    run, new_rows, tmp_path, monkeypatch
):
    _, reference = _predict(run, tmp_path / "whole", f"input={new_rows}", "data.eval_batch_size=2")
    answers = tmp_path / "answers.jsonl"
    line = [
        f"run_dir={run}",
        "decoding=score",
        "data.eval_batch_size=2",
        f"input={new_rows}",
        f"output={answers}",
    ]
    env = dict(os.environ, KILL_AFTER_CALLS="2")
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, *line, f"hydra.run.dir={tmp_path / 'killed'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    part = tmp_path / "answers.jsonl.part"
    assert len(part.read_text().splitlines()) == 4 and not answers.exists()  # 2 batches of 2 written
    with part.open("ab") as handle:
        handle.write(b'{"id": "new-test-4", "output": "[\\"re')  # as if killed inside a write
    from mmlearn.decoding import ScoreDecoder

    calls = []
    decode = ScoreDecoder.decode
    monkeypatch.setattr(
        ScoreDecoder, "decode", lambda self, c, b: calls.append(b["ids"]) or decode(self, c, b)
    )
    summary, _ = _predict(run, tmp_path, *line[2:])
    assert calls == [["new-test-4", "new-test-5"], ["new-test-6", "new-test-7"]]  # nothing written is redone
    assert summary["answered_before_restart"] == 4 and summary["answered"] == 8
    assert answers.read_text() == reference.read_text()
    assert not part.exists()


@pytest.mark.slow
def test_bad_rows_stop_the_run_naming_file_and_row_or_are_skipped_counted_and_listed(run, new_rows, tmp_path):
    rows = list(csv.DictReader(new_rows.open(encoding="utf-8")))[:3]
    rows[1]["image_path"] = "images/missing.png"
    bad = _table(
        new_rows.parent, [*rows, {"id": "empty", "text": "", "image_path": rows[0]["image_path"]}], "bad.csv"
    )
    with pytest.raises(ValueError, match=rf"{bad}:3: .*missing\.png.*data\.on_bad_sample=skip"):
        _predict(run, tmp_path, f"input={bad}")
    summary, answers = _predict(run, tmp_path, f"input={bad}", "data.on_bad_sample=skip")
    assert [r["id"] for r in _lines(answers)] == [rows[0]["id"], rows[2]["id"]]
    assert (summary["rows_read"], summary["answered"], summary["skipped"]) == (4, 2, 2)
    listed = _lines(tmp_path / "job" / "skipped_samples.jsonl")
    assert [r["source"] for r in listed] == [f"{bad}:3", f"{bad}:5"]
    assert json.loads((tmp_path / "job" / "prediction.json").read_text())["skipped_by_reason"] == {
        "image": 1,
        "row": 1,
    }
