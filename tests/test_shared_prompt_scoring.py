"""Scoring candidates on a shared prompt KV cache gives the same log-likelihoods as scoring every full
(prompt + answer) training sequence on its own, for every model family, with adapters and with
in-context examples; a chunk of rows may cross sample boundaries."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from mmlearn.decoding.score import score_candidates
from mmlearn.decoding.shared_prompt import score_with_shared_prompt
from mmlearn.models.adapters import attach_adapter
from mmlearn.models.prompting import IGNORE_INDEX
from mmlearn.models.towers import TOWERS, TowerPlan
from tests.conftest import CONF, compose

TINY = sorted(p.stem for p in (CONF / "model").glob("*_tiny.yaml"))
ANSWERS = ["red", "blue", "not_informative", '["red", "urgent"]', "[]"]
PROMPTS = ["Which colour is this?", "Is it urgent? Answer yes or no, please.", "x"]


def _images():
    return [
        [Image.new("RGB", (56, 56), (200, 30, 30))],
        [Image.new("RGB", (40, 64), (20, 30, 200))],
        [Image.new("RGB", (56, 56), (0, 200, 0))],
    ]


def _with_lora(cfg, spec):
    """A LoRA adapter with random B (a fresh adapter changes nothing, which would prove nothing)."""
    plan = TowerPlan(
        modes={"vision": "frozen", "projector": "frozen", "language": "lora"}, lr=dict.fromkeys(TOWERS)
    )
    adapter = instantiate(cfg.peft.adapter, r=4, lora_alpha=8, lora_dropout=0.0)
    model = attach_adapter(spec.load_model(quantization=None), spec, adapter, plan, quantized=False).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def _answer_ids(spec, processor, images, answers, **extra):
    extra = {"shots": extra["shots"][:1] * len(answers)} if extra else {}
    encoded = spec.prompt.encode(
        processor, PROMPTS[:1] * len(answers), images[:1] * len(answers), answers, **extra
    )
    return [label[label != IGNORE_INDEX].tolist() for label in encoded["labels"]]


def _both(model, spec, processor, images, rows_per_batch, **extra):
    batch = {"prompts": PROMPTS, "images": images, **({"shots": extra["shots"]} if extra else {})}
    full = score_candidates(
        model, processor, spec.prompt, batch, ANSWERS, normalize="sum", rows_per_batch=64, device="cpu"
    )
    prompts = spec.prompt.encode(processor, PROMPTS, images, **extra)
    shared = score_with_shared_prompt(
        model,
        prompts,
        _answer_ids(spec, processor, images, ANSWERS, **extra),
        pad_token_id=processor.tokenizer.pad_token_id or 0,
        rows_per_batch=rows_per_batch,
        device="cpu",
    )
    return full, shared


@pytest.mark.parametrize("family", TINY)
def test_shared_prompt_scores_equal_full_sequence_scores(family, offline_env):
    cfg = compose([f"model={family}", "paths.root_dir=/tmp/mmlearn-shared-prompt"])
    spec = instantiate(cfg.model, _convert_="all")
    processor = spec.load_processor()
    model = _with_lora(cfg, spec)
    full, shared = _both(model, spec, processor, _images(), rows_per_batch=4)  # 4 does not divide 5
    assert full.shape == shared.shape == (len(PROMPTS), len(ANSWERS))
    assert len({tuple(row.tolist()) for row in full}) == len(PROMPTS)  # the prompts really differ
    torch.testing.assert_close(shared, full, atol=1e-4, rtol=0)


def test_shared_prompt_scores_with_in_context_examples(offline_env):
    cfg = compose(["model=qwen2vl_tiny", "paths.root_dir=/tmp/mmlearn-shared-prompt"])
    spec = instantiate(cfg.model, _convert_="all")
    processor = spec.load_processor()
    model = spec.load_model(quantization=None).eval()
    shot_image = Image.new("RGB", (48, 48), (90, 90, 10))
    shots = [[("An example?", [shot_image], "blue")], [], [("Another?", [], "red"), ("Third?", [], "[]")]]
    full, shared = _both(model, spec, processor, _images(), rows_per_batch=7, shots=shots)
    torch.testing.assert_close(shared, full, atol=1e-4, rtol=0)
    without, _ = _both(model, spec, processor, _images(), rows_per_batch=7)
    assert not torch.allclose(full[0], without[0])  # the examples are part of what is scored
