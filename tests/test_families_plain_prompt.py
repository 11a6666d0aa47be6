"""PaliGemma 2 and IDEFICS (v1), the families without a chat template: tiny offline checkpoints loaded
through ModelSpec, their prompt formats, tower maps, QLoRA, the shared loss, and a short real run."""

import json
import re
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from mmlearn.models.loss import causal_lm_loss
from mmlearn.models.prompting import IGNORE_INDEX
from mmlearn.models.towers import tower_of
from tests.conftest import compose, run_script, split_metrics

FAMILIES = ["paligemma2", "idefics"]
PROMPTS = ["What colour is the block?", "Classify the post.\nText: can you send the report asap?"]
ANSWERS = ['["red"]', '["blue", "urgent", "question"]']


def _image(colour, size=56):
    return Image.new("RGB", (size, size), colour)


def _spec(family, pretrained):
    cfg = compose([f"model={family}_tiny", f"model.pretrained={pretrained}"])
    return instantiate(cfg.model, _convert_="all")


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request, tmp_path_factory):
    spec = _spec(request.param, tmp_path_factory.mktemp(request.param) / "model")
    processor = spec.load_processor()
    model = spec.load_model().eval()
    return SimpleNamespace(family=request.param, spec=spec, processor=processor, model=model)


def _images(*colours):
    return [[_image(c)] for c in colours]


def _unpadded(batch, i):
    return batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()


def test_reloads_through_model_spec_with_the_real_classes(tiny):
    tokenizer, config = tiny.processor.tokenizer, tiny.model.config
    expected = {
        "paligemma2": ("PaliGemmaProcessor", "PaliGemmaForConditionalGeneration"),
        "idefics": ("IdeficsProcessor", "IdeficsForVisionText2Text"),
    }[tiny.family]
    assert (type(tiny.processor).__name__, type(tiny.model).__name__) == expected
    width = tiny.model.get_output_embeddings().weight.shape[0]
    if tiny.family == "paligemma2":
        assert config.text_config.model_type == "gemma2"
        vision = config.vision_config
        assert tiny.processor.image_seq_length == (vision.image_size // vision.patch_size) ** 2
        assert tokenizer.convert_tokens_to_ids("<seg127>") < width == len(tokenizer)
    else:
        assert config.additional_vocab_size == 2 and width + 2 == len(tokenizer)
        assert not config.freeze_text_layers and not config.freeze_vision_layers
        assert all(p.requires_grad for p in tiny.model.parameters())
        for block in tiny.model.model.gated_cross_attn_layers:
            assert block.alpha_cross_attn.abs().min() > 0.5 and block.alpha_dense.abs().min() > 0.5
    assert 100_000 < sum(p.numel() for p in tiny.model.parameters()) < 1_000_000


def test_training_labels_cover_only_the_answer_and_end_token(tiny):
    fmt, processor = tiny.spec.prompt, tiny.processor
    tokenizer = processor.tokenizer
    images = _images("red", "blue")
    train = fmt.encode(processor, PROMPTS, images, answers=ANSWERS)
    prompt = fmt.encode(processor, PROMPTS, images)
    assert "labels" not in prompt
    for i, answer in enumerate(ANSWERS):
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        labels = train["labels"][i]
        kept = labels != IGNORE_INDEX
        assert labels[kept].tolist() == answer_ids
        n_prompt = int(kept.nonzero()[0])
        assert bool(kept[n_prompt : n_prompt + len(answer_ids)].all())  # one contiguous span
        row = _unpadded(train, i)
        assert row[:n_prompt] == _unpadded(prompt, i)  # training asks exactly what generation asks
        assert row[n_prompt:] == answer_ids
        if tiny.family == "paligemma2":
            # the answer is the causal suffix: token_type_ids 1 exactly on it
            assert train["token_type_ids"][i].tolist() == kept.long().tolist()
        else:
            # answer tokens cross-attend to what the last prompt token attends to, as generated ones do
            mask = train["image_attention_mask"][i]
            assert mask[n_prompt : n_prompt + len(answer_ids)].tolist() == [
                prompt["image_attention_mask"][i, -1].tolist()
            ] * len(answer_ids)
            assert mask[n_prompt - 1].any()


def test_paligemma_training_batches_carry_token_type_ids(tiny):
    if tiny.family != "paligemma2":
        pytest.skip("token_type_ids are PaliGemma's")
    train = tiny.spec.prompt.encode(tiny.processor, PROMPTS, _images("red", "blue"), answers=ANSWERS)
    assert train["token_type_ids"].shape == train["input_ids"].shape
    assert int(train["token_type_ids"].sum()) > 0
    # without them the prefix-LM mask would let the prompt attend to the answer: logits would change
    with torch.no_grad():
        typed = tiny.model(**{k: v for k, v in train.items() if k != "labels"}).logits
        untyped = tiny.model(
            **{k: v for k, v in train.items() if k not in ("labels", "token_type_ids")}
        ).logits
    assert not torch.allclose(typed, untyped)


def test_batched_left_padded_generation_equals_one_at_a_time(tiny):
    fmt, processor, model = tiny.spec.prompt, tiny.processor, tiny.model
    prompts = ["Why?", PROMPTS[1], PROMPTS[0]]
    images = _images("red", "blue", (0, 160, 0))
    tokenizer = processor.tokenizer

    def generate(batch):
        out = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return out[:, batch["input_ids"].shape[1] :].tolist()

    batch = fmt.encode(processor, prompts, images)
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1  # really padded
    batched = generate(batch)
    for i in range(len(prompts)):
        single = generate(fmt.encode(processor, prompts[i : i + 1], images[i : i + 1]))[0]
        assert batched[i][: len(single)] == single


def test_the_image_changes_the_logits(tiny):
    fmt = tiny.spec.prompt
    with torch.no_grad():
        red = tiny.model(**fmt.encode(tiny.processor, PROMPTS[:1], _images("red"))).logits[0, -1]
        blue = tiny.model(**fmt.encode(tiny.processor, PROMPTS[:1], _images("blue"))).logits[0, -1]
    assert (red - blue).abs().max() > 0.5  # not merely a rounding-level effect


def test_towers_cover_every_parameter_and_lora_regexes_stay_in_their_tower(tiny):
    towers, regexes = tiny.spec.towers, tiny.spec.lora_target_modules
    unplaced = [n for n, _ in tiny.model.named_parameters() if tower_of(n, towers) is None]
    assert not unplaced
    assert {tower_of(n, towers) for n, _ in tiny.model.named_parameters()} == {
        "vision",
        "projector",
        "language",
    }
    linear = [n for n, m in tiny.model.named_modules() if isinstance(m, torch.nn.Linear)]
    for tower, regex in regexes.items():
        hits = [n for n in linear if re.fullmatch(regex, n)]
        assert hits, tower
        assert {tower_of(n, towers) for n in hits} == {tower}, tower
    # the trap: the vision tower has q/k/v projections too; a plain name list would reach them
    vision_qkv = [n for n in linear if tower_of(n, towers) == "vision" and re.search(r"\.q_proj$", n)]
    assert vision_qkv and not any(re.fullmatch(regexes["language"], n) for n in vision_qkv)
    if tiny.family == "idefics":  # LoRA reaches the gated cross-attention
        assert any(re.fullmatch(regexes["language"], n) for n in linear if ".cross_attn." in n)


def test_too_many_images_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="has 2 images but this model family takes at most 1"):
        tiny.spec.prompt.encode(tiny.processor, PROMPTS[:1], [[_image("red"), _image("blue")]])


def test_text_only_prompts(tiny):
    fmt = tiny.spec.prompt
    if tiny.family == "paligemma2":
        with pytest.raises(ValueError, match=r"needs an image in every prompt.*modality=text"):
            fmt.encode(tiny.processor, PROMPTS, [[], []], answers=ANSWERS)
        return
    # IDEFICS reads text alone: no token cross-attends, the cross-attention gate is closed
    train = fmt.encode(tiny.processor, PROMPTS, [[], [_image("red")]], answers=ANSWERS)
    assert not train["image_attention_mask"][0].any() and train["image_attention_mask"][1].any()
    with torch.no_grad():
        loss = causal_lm_loss(
            tiny.model(**{k: v for k, v in train.items() if k != "labels"}).logits, train["labels"]
        )
    assert torch.isfinite(loss)


def test_qlora_on_cpu_keeps_vision_and_projector_unquantised_and_trains(tiny):
    import bitsandbytes as bnb
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    from mmlearn.models.adapters import attach_adapter
    from mmlearn.models.towers import TowerPlan

    spec = tiny.spec
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=spec.skip_quantization_modules,
    )
    base = spec.load_model(quantization=quant, device_map={"": "cpu"})
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Linear):
            quantised = isinstance(module, bnb.nn.Linear4bit)
            tower = tower_of(name + ".weight", spec.towers)
            assert quantised == (tower == "language" and not name.startswith("lm_head")), name
    plan = TowerPlan(
        modes={"vision": "frozen", "projector": "frozen", "language": "lora"},
        lr={"vision": None, "projector": None, "language": None},
    )
    model = attach_adapter(
        base,
        spec,
        LoraConfig(r=4, lora_alpha=8, target_modules=spec.lora_target_modules["language"]),
        plan,
        quantized=True,
    )
    batch = spec.prompt.encode(tiny.processor, PROMPTS, _images("red", "blue"), answers=ANSWERS)
    labels = batch.pop("labels")
    causal_lm_loss(model(**batch).logits, labels).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n and g is not None for n, g in grads.items())
    moving = {n for n, g in grads.items() if "lora_B" in n and g.abs().sum() > 0}
    assert moving
    if tiny.family == "idefics":  # the gates are open, so the cross-attention adapter learns
        assert any(".cross_attn." in n for n in moving)


def _assert_same_loss_as_builtin(model, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        ours = causal_lm_loss(model(**inputs).logits, batch["labels"])
        builtin = model(**batch).loss
    assert ours.item() == pytest.approx(builtin.item(), rel=1e-5)


def test_loss_equals_the_builtin_loss_where_that_is_right(tiny):
    batch = tiny.spec.prompt.encode(tiny.processor, PROMPTS, _images("red", "blue"), answers=ANSWERS)
    if tiny.family == "paligemma2":
        _assert_same_loss_as_builtin(tiny.model, batch)
        return
    # IDEFICS: logits are vocab_size + additional_vocab_size wide; the built-in loss reshapes them to
    # vocab_size and breaks. Ours equals the library's own loss function given the right width.
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = tiny.model(**inputs).logits
        assert logits.shape[-1] == tiny.model.config.vocab_size + tiny.model.config.additional_vocab_size
        with pytest.raises(RuntimeError):
            tiny.model(**batch)
        reference = tiny.model.loss_function(
            logits=logits, labels=batch["labels"], vocab_size=logits.shape[-1]
        )
    assert causal_lm_loss(logits, batch["labels"]).item() == pytest.approx(reference.item(), rel=1e-5)


def test_loss_equals_the_builtin_loss_on_qwen2vl(tiny_qwen2vl):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tests.conftest import chat_prompt

    processor = AutoProcessor.from_pretrained(
        tiny_qwen2vl, size={"shortest_edge": 3136, "longest_edge": 3136}
    )
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl).eval()
    batch = chat_prompt().encode(processor, PROMPTS, _images("red", "blue"), answers=ANSWERS)
    _assert_same_loss_as_builtin(model, batch)


@pytest.mark.parametrize(
    ("family", "real_id"),
    [("paligemma2", "google/paligemma2-3b-pt-224"), ("idefics", "HuggingFaceM4/idefics-9b")],
)
def test_real_presets_compose_with_the_real_ids(family, real_id):
    cfg = compose([f"model={family}", "peft=qlora"])
    assert cfg.model.pretrained == real_id and cfg.model.torch_dtype == "bfloat16"
    assert cfg.model.build is None and not cfg.model.trust_remote_code
    assert list(cfg.peft.quantization.llm_int8_skip_modules) == list(cfg.model.skip_quantization_modules)


def _train(run_dir, demo_dir, family, peft, steps):
    run_script(
        "train.py",
        f"model={family}_tiny",
        f"peft={peft}",
        f"trainer.max_steps={steps}",
        "logger=csv",
        f"data.root={demo_dir}",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        f"hydra.run.dir={run_dir}",
    )
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_train_then_evaluate_reproduces_the_test_metrics(family, tmp_path, demo_dir):
    run_dir = tmp_path / "run"
    metrics = _train(run_dir, demo_dir, family, "lora", 2)
    run_script("evaluate.py", f"run_dir={run_dir}")
    (eval_dir,) = (run_dir / "eval").iterdir()
    assert split_metrics(eval_dir / "metrics.json") == {
        k: v for k, v in metrics.items() if k.startswith("test/")
    }
    # after two steps every answer is still wrong, so the generated text is the real check
    trained = (run_dir / "predictions" / "test.jsonl").read_text()
    assert trained and (eval_dir / "predictions" / "test.jsonl").read_text() == trained


@pytest.mark.slow
@pytest.mark.parametrize("peft", ["qlora", "dora", "none"])
def test_paligemma2_trains_with_qlora_dora_and_full_fine_tune(peft, tmp_path, demo_dir):
    metrics = _train(tmp_path / "run", demo_dir, "paligemma2", peft, 1)
    assert "test/f1_macro" in metrics
