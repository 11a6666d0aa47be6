"""Failures that explain themselves: a non-finite loss stops before the update and names the step and
the samples, keeping the last good checkpoint; an out-of-memory error says where the memory goes and
which knobs shrink it."""

import math

import pytest
import torch

from mmlearn.module import VLMFineTuner
from tests.conftest import compose


def _cfg(tmp_path, demo_dir, *extra):
    return compose(
        [
            "logger=csv",
            f"data.root={demo_dir}",
            "data.prepare.splits={train: 16, val: 8, test: 8}",
            "data.batch_size=2",
            "trainer.max_steps=6",
            "trainer.enable_progress_bar=false",
            "callbacks.resume_checkpoint.every_n_train_steps=2",
            "paths.root_dir=/tmp/mmlearn-faults",
            f"paths.output_dir={tmp_path / 'run'}",
            *extra,
        ]
    )


def test_a_nan_loss_stops_the_run_naming_step_and_samples(tmp_path, tiny_qwen2vl, demo_dir, monkeypatch):
    from mmlearn.faults import NonFiniteLossError
    from mmlearn.training import train

    seen = {}
    real_step = VLMFineTuner.training_step

    def poisoned(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        if self.global_step == 3:
            seen["ids"] = batch["ids"]
            return loss * math.nan
        return loss

    monkeypatch.setattr(VLMFineTuner, "training_step", poisoned)
    with pytest.raises(NonFiniteLossError) as error:
        train(_cfg(tmp_path, demo_dir))
    message = str(error.value)
    assert "loss is nan at step 3" in message and str(seen["ids"]) in message
    last = tmp_path / "run/checkpoints/last.ckpt"
    assert str(last) in message
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 2  # the last good one; nothing written after the NaN
    assert all(torch.isfinite(w).all() for w in ckpt["state_dict"].values())
    assert not (tmp_path / "run/metrics.json").exists()


def test_out_of_memory_explains_the_estimate_and_the_knobs(tmp_path, tiny_qwen2vl, demo_dir, monkeypatch):
    from mmlearn.training import train

    def out_of_memory(self, batch, batch_idx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(VLMFineTuner, "training_step", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError) as error:
        train(_cfg(tmp_path, demo_dir))
    advice = "\n".join(getattr(error.value, "__notes__", []))
    assert "Out of GPU memory on a batch of 2 x" in advice and "estimated need" in advice
    for knob in (
        "data.batch_size=1",
        "trainer.accumulate_grad_batches=2",
        "model.processor_kwargs.max_pixels",
        "model.processor_kwargs.size.longest_edge",
        "model.gradient_checkpointing=true",
        "peft=qlora",
        "trainer.precision=bf16-mixed",
    ):
        assert knob in advice, knob


def test_the_memory_estimate_grows_with_the_batch_and_shrinks_with_checkpointing(tiny_qwen2vl):
    from transformers import AutoModelForImageTextToText

    from mmlearn.memory import estimate_model

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl).requires_grad_(False)

    def at(batch, checkpointing=False):
        return estimate_model(
            model,
            dtype_bytes=4,
            tokens=100,
            batch=batch,
            precision="32-true",
            gradient_checkpointing=checkpointing,
        )

    small, large = at(2), at(4)
    assert large.activations == 2 * small.activations and large.weights == small.weights
    assert at(2, checkpointing=True).activations < small.activations
    assert small.weights == sum(p.numel() * 4 for p in model.parameters())  # float32, nothing in 4 bit


def test_out_of_memory_advice_sees_gradient_checkpointing_in_the_model(tiny_qwen2vl):
    """The advice reads checkpointing from the model's layers (not a deprecated transformers property):
    turning it on shrinks the activation estimate and marks the knob as already on."""
    from types import SimpleNamespace

    from transformers import AutoModelForImageTextToText

    from mmlearn.faults import oom_advice

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl)
    module = SimpleNamespace(model=model, spec=SimpleNamespace(torch_dtype="float32"))
    batch = {"inputs": {"input_ids": torch.zeros(64, 50_000, dtype=torch.long)}}  # GiB-sized activations
    trainer = SimpleNamespace(precision="32-true", accumulate_grad_batches=1)

    def activations(advice: str) -> float:
        return float(next(ln for ln in advice.splitlines() if "activations:" in ln).split()[1])

    before = oom_advice(module, batch, trainer)
    model.gradient_checkpointing_enable()
    after = oom_advice(module, batch, trainer)
    assert "(already on)" not in before and "model.gradient_checkpointing=true (already on)" in after
    assert activations(after) < activations(before)
