"""A 100-way label set (a small copy of 100 Sports with all its class names): constrained generation and
label scoring through evaluate.py never fail to parse, while the same untrained model's free
generation does; label scores are a distribution over the 100 classes."""

from __future__ import annotations

import json

import pytest

from tests.conftest import compose
from tests.layouts_more import SPORTS100, sports100_files, write_sports

TEST_CLASSES = 12


@pytest.fixture(scope="module")
def sports100(tmp_path_factory, offline_env):
    return write_sports(tmp_path_factory.mktemp("sports100"), sports100_files(test_classes=TEST_CLASSES))


def _evaluate(root, out, decoding: str, *overrides: str):
    from mmlearn.evaluation import evaluate

    cfg = compose(
        [
            "data=sports100",
            f"data.root={root}",
            "modality=image",
            f"decoding={decoding}",
            f"paths.root_dir={out}",
            f"paths.output_dir={out}",
            *overrides,
        ],
        "evaluate",
    )
    metrics = evaluate(cfg)
    rows = [json.loads(line) for line in (out / "predictions" / "test.jsonl").read_text().splitlines()]
    return metrics, rows


@pytest.mark.parametrize(
    ("decoding", "overrides"),
    [("constrained", []), ("score", []), ("score", ["decoding.likelihood=full"])],
    ids=["constrained", "score", "score_full"],
)
def test_closed_decoding_has_no_parse_failures_on_100_classes(sports100, tmp_path, decoding, overrides):
    metrics, rows = _evaluate(sports100, tmp_path, decoding, *overrides)
    assert metrics["test/parse_failure_rate"] == 0.0
    assert len(rows) == TEST_CLASSES
    assert all(row["parse_ok"] and row["parsed"][0] in SPORTS100 for row in rows)
    if decoding == "score":
        for row in rows:
            assert set(row["scores"]) == set(SPORTS100)
            assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-4)
            assert row["parsed"] == [max(row["scores"], key=row["scores"].get)]


def test_free_generation_fails_to_parse_on_100_classes(sports100, tmp_path):
    """Without this the two tests above would prove nothing: the untrained model's own answers are
    not sport names."""
    metrics, _ = _evaluate(sports100, tmp_path, "generate")
    assert metrics["test/parse_failure_rate"] > 0.5
