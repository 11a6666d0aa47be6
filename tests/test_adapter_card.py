"""A trained adapter (and its exports) used without mmlearn: a fresh interpreter that never imports
mmlearn runs the model card's own code on the folder alone and gets mmlearn's test predictions; the
card's metadata is Hub-valid; every file is readable like the rest of the run."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_script

pytestmark = pytest.mark.slow
UMASK = 0o022


@pytest.fixture(scope="module")
def card_run(tmp_path_factory, tiny_qwen2vl, demo_dir):
    """12 epochs of 4 steps: enough for the tiny model to answer in the JSON-array format."""
    run_dir = tmp_path_factory.mktemp("card") / "run"
    previous = os.umask(UMASK)  # the entry points inherit it; the artefacts must honour it
    try:
        run_script(
            "train.py",
            "logger=csv",
            "trainer.max_epochs=12",
            "optimizer.lr=3e-3",
            f"data.root={demo_dir}",
            "data.prepare.splits={train: 16, val: 8, test: 8}",
            "data.batch_size=4",
            f"hydra.run.dir={run_dir}",
        )
        run_script("export.py", f"run_dir={run_dir}", "merge=true", f"output_dir={run_dir}/export")
        run_script("export.py", f"run_dir={run_dir}", "merge=false", f"output_dir={run_dir}/export_adapter")
    finally:
        os.umask(previous)
    return run_dir


def _front_matter(text: str) -> tuple[dict, str]:
    """The parsed YAML header of a model card, and its raw text."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md does not start with YAML front matter"
    return yaml.safe_load(match.group(1)), match.group(1)


def _snippet(readme: Path) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", readme.read_text(), re.DOTALL)
    return code


def _test_rows(demo_dir: Path) -> list[dict]:
    with (demo_dir / "test.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [
        {"id": r["id"], "text": r["text"].strip(), "image": str(demo_dir / r["image_path"])} for r in rows
    ]


def _plain_answers(folder: Path, rows: list[dict], tmp_path: Path) -> list[str]:
    """The card's code, with only its folder filled in and its example call replaced by the test rows,
    in an interpreter that gets nothing but the folder (and the base checkpoint mmlearn.json names)."""
    code = _snippet(folder / "README.md")
    code, n = re.subn(r'Path\("path/to/this/folder"\)', f"Path({str(folder)!r})", code)
    assert n == 1, "the card's code has no folder line to fill in"
    code = code.split("# Example:")[0]
    inputs = tmp_path / f"{folder.name}_rows.json"
    inputs.write_text(json.dumps(rows))
    code += (
        "\nimport sys\n"
        f"answers = answer(json.loads(Path({str(inputs)!r}).read_text()))\n"
        'assert "mmlearn" not in sys.modules, "the plain-transformers path imported mmlearn"\n'
        "print(json.dumps(answers))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMLEARN_", "PYTHON"))}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _parse_json_array(output: str, labels: list[str]) -> list[str] | None:
    """mmlearn.json's `json_array` answer format, read as its `parse` sentence says."""
    match = re.search(r"\[[^\[\]]*\]", output)
    if match is None:
        return None
    items = json.loads(match.group(0))
    known = {" ".join(str(item).lower().replace("_", " ").split()) for item in items}
    return [label for label in labels if label in known]


@pytest.mark.parametrize("folder", ["adapter", "export"])
def test_plain_transformers_reproduces_mmlearns_predictions(card_run, demo_dir, tmp_path, folder):
    predictions = [
        json.loads(line) for line in (card_run / "predictions" / "test.jsonl").read_text().splitlines()
    ]
    rows = _test_rows(demo_dir)
    assert [r["id"] for r in rows] == [p["id"] for p in predictions]
    answers = _plain_answers(card_run / folder, rows, tmp_path)
    assert answers == [p["output"] for p in predictions]
    description = json.loads((card_run / folder / "mmlearn.json").read_text())
    assert description["task"]["answer_format"] == "json_array"
    parsed = [_parse_json_array(a, description["task"]["labels"]) for a in answers]
    assert parsed == [p["parsed"] for p in predictions]
    assert any(parsed), "the trained model should answer in the label format"


def test_mmlearn_json_records_what_the_run_used(card_run):
    description = json.loads((card_run / "adapter" / "mmlearn.json").read_text())
    config = yaml.safe_load((card_run / "config.yaml").read_text())
    metrics = json.loads((card_run / "metrics.json").read_text())
    assert description["schema_version"] == 1 and description["artefact"] == "adapter"
    assert description["base_model"] == {
        "id": None,  # the tiny preset is a local checkpoint, not a Hub model
        "path": config["model"]["pretrained"],
        "revision": None,
        "family": "qwen2vl",
        "preset": "qwen2vl_tiny",
    }
    assert description["task"]["labels"] == (Path(config["data"]["labels_file"]).read_text().split())
    assert description["task"]["instruction"] == config["data"]["instruction"]
    assert description["data"] == {
        "name": "demo",
        "modality": "text_image",
        "uses_text": True,
        "uses_image": True,
        "eval_batch_size": config["data"]["eval_batch_size"],
    }
    assert description["decoding"]["decoder"] == "generate"
    assert description["metrics"] == metrics
    template = description["prompt"]["template"]
    assert template.count("{text}") == 1 and "red, blue, urgent, question" in template


def test_card_metadata_names_no_local_path(card_run):
    metrics = json.loads((card_run / "metrics.json").read_text())
    for folder, library in [("adapter", "peft"), ("export", "transformers"), ("export_adapter", "peft")]:
        meta, raw = _front_matter((card_run / folder / "README.md").read_text())
        assert meta["library_name"] == library and meta["pipeline_tag"] == "image-text-to-text"
        assert {"mmlearn", "lora", "qwen2vl", "multilabel", "demo"} <= set(meta["tags"])
        assert "base_model" not in meta  # no Hub id for a local checkpoint, and never its path
        assert str(card_run.parents[1]) not in raw and not re.search(r"(^|\s)/[\w.]", raw, re.MULTILINE)
        scores = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        assert scores == pytest.approx(
            {k: v for k, v in metrics.items() if k.startswith("test/") and k.count("/") == 1}
        )
        body = (card_run / folder / "README.md").read_text()
        template = json.loads((card_run / folder / "mmlearn.json").read_text())["prompt"]["template"]
        assert template in body and "# Model Card for Model ID" not in body


def test_a_hub_base_model_is_named_in_the_card(card_run):
    from mmlearn.artefacts.card import render_card

    description = json.loads((card_run / "adapter" / "mmlearn.json").read_text())
    description["base_model"].update(id="Qwen/Qwen2-VL-2B-Instruct", path=None)
    meta, _ = _front_matter(render_card(description))
    assert meta["base_model"] == "Qwen/Qwen2-VL-2B-Instruct" and meta["base_model_relation"] == "adapter"


def test_exports_say_what_they_are(card_run):
    merged = json.loads((card_run / "export" / "mmlearn.json").read_text())
    copied = json.loads((card_run / "export_adapter" / "mmlearn.json").read_text())
    assert merged["artefact"] == "merged_model" and copied["artefact"] == "adapter"
    assert merged["export"] == {"run_dir": str(card_run.resolve()), "merged": True}
    assert copied["export"]["merged"] is False
    assert not (card_run / "export" / "adapter_config.json").exists()


@pytest.mark.parametrize("folder", ["adapter", "export", "export_adapter"])
def test_artefact_files_are_readable_by_everyone(card_run, folder):
    root = card_run / folder
    modes = {str(p.relative_to(card_run)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}
    expected = {name: 0o755 if (card_run / name).is_dir() else 0o644 for name in modes}
    assert modes == expected
    assert f"{folder}/mmlearn.json" in modes and f"{folder}/README.md" in modes


def test_base_model_is_a_hub_id_unless_a_local_directory(tmp_path):
    from types import SimpleNamespace

    from mmlearn.artefacts.describe import base_model

    spec = SimpleNamespace(
        pretrained="Qwen/Qwen2-VL-2B-Instruct", revision="main", family="qwen2vl", name="qwen2vl"
    )
    assert base_model(spec) == {
        "id": "Qwen/Qwen2-VL-2B-Instruct",
        "path": None,
        "revision": "main",
        "family": "qwen2vl",
        "preset": "qwen2vl",
    }
    spec.pretrained = str(tmp_path)
    assert base_model(spec)["id"] is None and base_model(spec)["path"] == str(tmp_path.resolve())
