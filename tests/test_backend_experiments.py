"""Seed 000's API rows (GPT-4o / GPT-4o mini, zero-, one- and five-shot on CrisisMMD) compose with
evaluate.py without a key, carry the seed's settings, and refuse to run without OPENAI_API_KEY."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from tests.conftest import CONF, compose

API = sorted(p.stem for p in (CONF / "experiment" / "crisismmd_api").glob("*.yaml"))
# experiment: (endpoint model, data, shots per class); five-shot on the humanitarian task only, as the seed
ROWS = {
    f"{m}_{task}_{k}_shot": (name, f"crisismmd_{task}", shots)
    for m, name in (("gpt4o", "gpt-4o"), ("gpt4o_mini", "gpt-4o-mini"))
    for task, ks in (("informative", ("zero", "one")), ("humanitarian", ("zero", "one", "five")))
    for k, shots in zip(("zero", "one", "five"), (None, 1, 5), strict=False)
    if k in ks
}


def test_every_api_row_has_a_file():
    assert set(API) == set(ROWS) and len(API) == 10


@pytest.mark.parametrize("name", API)
def test_api_experiment_composes_without_a_key(name, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = compose(
        [f"experiment=crisismmd_api/{name}", "paths.root_dir=/tmp/mmlearn-api", "paths.output_dir=/tmp/o"],
        "evaluate",
    )
    model, data, shots = ROWS[name]
    assert (cfg.backend.model, cfg.data.name, cfg.modality.name) == (model, data, "text_image")
    assert cfg.shots_per_class == shots and cfg.shots == 0
    assert cfg.backend.base_url == "https://api.openai.com/v1" and cfg.backend.api_key_env == "OPENAI_API_KEY"
    assert set(cfg.backend.prices) == {"input", "output"}
    backend = instantiate(cfg.backend, _convert_="all", _partial_=True)(decoding=instantiate(cfg.decoding))
    with pytest.raises(ValueError, match="environment variable OPENAI_API_KEY is not set"):
        backend.api_key()
