"""The throughput benchmark's functions run end to end on a very small setting (no timing asserted),
so the script cannot rot."""

import importlib.util
import math

import pytest

from tests.conftest import REPO

KEYS = {
    "speedup_vs_trainer",
    "padding_fraction_grouped",
    "padding_fraction_ungrouped",
    "loader_headroom",
    "vision_cache_speedup",
}


def _script():
    spec = importlib.util.spec_from_file_location(
        "train_throughput", REPO / "benchmarks" / "train_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_functions_produce_finite_figures(tmp_path, tiny_qwen2vl):
    bench = _script()
    (tmp_path / "qwen2vl_tiny").symlink_to(tiny_qwen2vl)
    model_dir, data_dir = bench.build_inputs(tmp_path, n_train=12)
    settings = {
        "workdir": str(tmp_path), "model_dir": str(model_dir), "data_dir": str(data_dir), "steps": 3,
        "warmup": 1, "batch_size": 4, "num_workers": 0, "n_train": 12,
    }  # fmt: skip
    result = bench.measure(settings, isolate=False)
    assert set(result) >= KEYS
    numbers = [result[k] for k in KEYS] + [result["mmlearn_samples_per_s"], result["trainer_samples_per_s"]]
    assert all(math.isfinite(x) and x >= 0 for x in numbers)
    assert 0 <= result["padding_fraction_grouped"] < 1 and result["gpu"].get("skipped")
    assert result["versions"]["torch"] and result["settings"]["batch_size"] == 4
    cache = result["vision_cache"]  # epochs of 12 samples: only the first one encodes images
    assert cache["samples_per_epoch"] == 12 and 0 < cache["images_encoded"] <= 12 <= cache["cache_hits"]
