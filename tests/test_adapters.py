"""Adapter invariants on the tiny model: what trains, save/reload identity, refusal of misfits, QLoRA."""

import pytest
import torch
from peft import LoraConfig
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

from mmlearn.models.adapters import attach_adapter, load_adapter
from mmlearn.models.towers import TowerPlan
from tests.conftest import compose

LM_REGEX = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


def _lora(targets=LM_REGEX):
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)


def _plan(vision="frozen", projector="frozen", language="lora", **lr):
    modes = {"vision": vision, "projector": projector, "language": language}
    return TowerPlan(modes=modes, lr={t: lr.get(t) for t in modes})


@pytest.fixture(scope="module")
def spec(tiny_qwen2vl):
    from hydra.utils import instantiate

    cfg = compose(["model=qwen2vl_tiny", f"model.pretrained={tiny_qwen2vl}", "paths.root_dir=/tmp/mmlearn-x"])
    return instantiate(cfg.model, _convert_="all")


def _inputs(model):
    torch.manual_seed(0)
    ids = torch.randint(10, 300, (2, 12))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _nudge(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


def test_only_language_model_lora_weights_train(tiny_qwen2vl, spec):
    model = attach_adapter(
        AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl), spec, _lora(), _plan(), quantized=False
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".language_model.layers." in n for n in trainable)
    assert not any("visual" in n for n in trainable)


def test_saved_adapter_reloads_to_identical_logits(tiny_qwen2vl, tmp_path, spec):
    model = attach_adapter(
        AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl), spec, _lora(), _plan(), quantized=False
    )
    _nudge(model)
    model.eval()
    before = model(**_inputs(model)).logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = load_adapter(
        AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl), tmp_path / "adapter"
    ).eval()
    after = reloaded(**_inputs(reloaded)).logits
    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl).eval()
    assert torch.equal(before, after)
    assert not torch.allclose(before, base(**_inputs(base)).logits)  # the adapter really changes the output


def test_adapter_that_does_not_fit_is_refused(tiny_qwen2vl, tmp_path, spec):
    model = attach_adapter(
        AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl), spec, _lora(), _plan(), quantized=False
    )
    model.save_pretrained(tmp_path / "adapter")
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k.replace("language_model", "text_model"): v for k, v in tensors.items()}, weights)
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl), tmp_path / "adapter")


def test_target_modules_matching_nothing_is_an_error(tiny_qwen2vl, spec):
    with pytest.raises(ValueError):
        attach_adapter(
            AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl),
            spec,
            _lora(r"nothing\.here"),
            _plan(),
            quantized=False,
        )


def test_qlora_on_cpu_quantises_the_language_model_only_and_trains(tiny_qwen2vl, spec):
    import bitsandbytes as bnb

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=["model.visual", "lm_head"],
    )
    base = AutoModelForImageTextToText.from_pretrained(
        tiny_qwen2vl, quantization_config=quant, device_map={"": "cpu"}
    )
    modules = dict(base.named_modules())
    assert isinstance(modules["model.language_model.layers.0.self_attn.q_proj"], bnb.nn.Linear4bit)
    assert not isinstance(modules["model.visual.blocks.0.attn.qkv"], bnb.nn.Linear4bit)
    assert not isinstance(modules["lm_head"], bnb.nn.Linear4bit)
    model = attach_adapter(base, spec, _lora(), _plan(), quantized=True)
    inputs = _inputs(model)
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_full_fine_tune_of_a_4bit_model_is_refused(tiny_qwen2vl, spec):
    with pytest.raises(ValueError, match="4-bit"):
        attach_adapter(
            AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl), spec, None, _plan(), quantized=True
        )
