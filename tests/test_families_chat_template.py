"""Four chat-template families (Qwen2.5-VL, SmolVLM/Idefics3, Mllama, LLaVA-1.5) through the same path:
tiny checkpoints that reload like real ones, answer-only labels, batched generation, live images,
tower-confined LoRA, image limits, QLoRA on CPU, and train + evaluate through the entry points."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from mmlearn.data.collate import IGNORE_INDEX, PromptCollator, TrainCollator
from mmlearn.data.images import load_rgb
from mmlearn.models.adapters import attach_adapter
from mmlearn.models.loss import causal_lm_loss
from mmlearn.models.towers import TowerPlan, tower_of
from mmlearn.sample import Sample
from mmlearn.tasks import MultiLabelTask
from tests.conftest import compose, run_script, split_metrics

FAMILIES = ["qwen2_5vl", "smolvlm", "mllama", "llava"]
MODEL_CLASS = {
    "qwen2_5vl": ("Qwen2_5_VLProcessor", "Qwen2_5_VLForConditionalGeneration"),
    "smolvlm": ("Idefics3Processor", "Idefics3ForConditionalGeneration"),
    "mllama": ("MllamaProcessor", "MllamaForConditionalGeneration"),
    "llava": ("LlavaProcessor", "LlavaForConditionalGeneration"),
}
LABELS = ["red", "blue", "urgent", "question"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """family -> (spec, processor, model): each tiny checkpoint is built once, into a tmp dir."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("families")

    def get(family: str):
        if family not in cache:
            spec = _spec(family, root)
            cache[family] = (spec, spec.load_processor(), spec.load_model().eval())
        return cache[family]

    return get


def _spec(family, root, *overrides):
    cfg = compose([f"model={family}_tiny", f"model.pretrained={root / family}", *overrides])
    return instantiate(cfg.model, _convert_="all")


def _task():
    return MultiLabelTask(LABELS, "Labels: {labels}.")


def _samples(demo_dir, n=3, image=True):
    rows = list(csv.DictReader((demo_dir / "train.csv").open()))[:n]
    return [
        Sample(
            id=r["id"],
            text=r["text"] + " please" * i,  # different lengths, so the batch is padded
            image_path=demo_dir / r["image_path"] if image else None,
            labels=tuple(x for x in r["labels"].split(",") if x),
        )
        for i, r in enumerate(rows)
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoint_reloads_like_a_real_one(built, family):
    spec, processor, model = built(family)
    assert (type(processor).__name__, type(model).__name__) == MODEL_CLASS[family]
    tok = processor.tokenizer
    text = model.config.text_config
    assert text.vocab_size >= len(tok)
    assert text.eos_token_id == tok.eos_token_id and text.pad_token_id == tok.pad_token_id
    assert tok.bos_token_id is None or text.bos_token_id == tok.bos_token_id
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) < 400_000
    # every parameter belongs to exactly one tower
    assert all(tower_of(n, spec.towers) for n, _ in model.named_parameters())


@pytest.mark.parametrize("image", [True, False], ids=["text_image", "text"])
@pytest.mark.parametrize("family", FAMILIES)
def test_labels_cover_exactly_the_reply_the_template_renders(built, demo_dir, family, image):
    spec, processor, _ = built(family)
    tok, task, items = processor.tokenizer, _task(), _samples(demo_dir, image=image)
    train = TrainCollator(processor, spec.prompt, task)(items)["inputs"]
    generation = PromptCollator(processor, spec.prompt, task)(items)["inputs"]
    for i, item in enumerate(items):
        labels = train["labels"][i]
        length = int(train["attention_mask"][i].sum())
        answer = labels[labels != IGNORE_INDEX].tolist()
        # the supervised span is the end of the sequence: reply tokens, then the end token
        positions = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        assert positions == list(range(length - len(answer), length)) and answer[-1] == tok.eos_token_id
        # ... and it is the reply exactly as the family's own template renders an assistant turn
        user = [
            {
                "role": "user",
                "content": [{"type": "image"}] * image + [{"type": "text", "text": task.prompt(item)}],
            }
        ]
        reply = [{"role": "assistant", "content": [{"type": "text", "text": task.answer(item)}]}]
        prompt_text = processor.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full_text = processor.apply_chat_template(user + reply, tokenize=False)
        assert full_text.startswith(prompt_text)
        assert full_text[len(prompt_text) :].startswith(tok.decode(answer[:-1]))
        # the training prompt is the generation prompt, never supervised, with a single bos
        prompt = generation["input_ids"][i][generation["attention_mask"][i].bool()].tolist()
        assert train["input_ids"][i, : len(prompt)].tolist() == prompt
        assert len(prompt) + len(answer) == length
        if tok.bos_token_id is not None:
            assert prompt.count(tok.bos_token_id) == 1
    if image:
        assert torch.equal(train["pixel_values"], generation["pixel_values"])
    else:
        assert "pixel_values" not in train


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_left_padded_generation_equals_one_at_a_time(built, demo_dir, family):
    spec, processor, model = built(family)
    tok, collate = processor.tokenizer, PromptCollator(processor, spec.prompt, _task())
    items = _samples(demo_dir)

    def greedy(batch):
        inputs = batch["inputs"]
        out = model.generate(
            **inputs,
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        return [row.tolist() for row in out[:, inputs["input_ids"].shape[1] :]]

    batch = collate(items)
    assert len(set(batch["inputs"]["attention_mask"].sum(1).tolist())) > 1  # really padded
    assert (batch["inputs"]["attention_mask"][:, -1] == 1).all()  # on the left
    batched = greedy(batch)
    for item, row in zip(items, batched, strict=True):
        (single,) = greedy(collate([item]))
        assert row[: len(single)] == single
        assert all(t == tok.pad_token_id for t in row[len(single) :])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_image_changes_the_logits(built, family):
    spec, processor, model = built(family)
    red, blue = Image.new("RGB", (56, 56), (230, 20, 20)), Image.new("RGB", (56, 56), (20, 20, 230))
    logits = []
    for image in (red, blue):
        inputs = spec.prompt.encode(processor, ["Which colour?"], [[image]])
        with torch.no_grad():
            logits.append(model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_regexes_stay_inside_theirtower_of(built, family):
    spec, _, model = built(family)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    for tower, regex in spec.lora_target_modules.items():
        matched = [n for n in names if re.fullmatch(regex, n)]
        assert matched, f"{tower} regex matches nothing"
        assert {tower_of(n, spec.towers) for n in matched} == {tower}, matched
    language = [n for n in names if re.fullmatch(spec.lora_target_modules["language"], n)]
    # every attention/MLP projection of the language model, and not the output head
    assert not any(n == "lm_head" for n in language)
    assert any(re.search(r"\.(q|k|v|o)_proj$", n) for n in language)
    if family == "mllama":
        assert any(".cross_attn." in n for n in language)


@pytest.mark.parametrize("family", FAMILIES)
def test_more_images_than_the_family_takes(built, demo_dir, family):
    spec, processor, model = built(family)
    images = [[load_rgb(s.image_path) for s in _samples(demo_dir, n=2)]]
    if spec.prompt.max_images is not None:
        with pytest.raises(ValueError, match=f"at most {spec.prompt.max_images}"):
            spec.prompt.encode(processor, ["Compare."], images)
    else:  # no fixed limit: a two-image prompt encodes and runs
        inputs = spec.prompt.encode(processor, ["Compare."], images, answers=["[]"])
        with torch.no_grad():
            assert torch.isfinite(model(**inputs).loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_qlora_on_cpu_keeps_vision_and_projector_unquantised_and_trains(built, demo_dir, family, tmp_path):
    import bitsandbytes as bnb

    spec, processor, _ = built(family)
    cfg = compose([f"model={family}_tiny", f"model.pretrained={spec.pretrained}", "peft=qlora"])
    base = spec.load_model(
        quantization=instantiate(cfg.peft.quantization, _convert_="all"), device_map={"": "cpu"}
    )
    linears = {n: m for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)}
    for name, module in linears.items():
        quantised = isinstance(module, bnb.nn.Linear4bit)
        assert quantised == (tower_of(name, spec.towers) == "language" and name != "lm_head"), name
    plan = TowerPlan(modes=dict(cfg.peft.towers), lr=dict(cfg.peft.tower_lr))
    model = attach_adapter(base, spec, instantiate(cfg.peft.adapter, _convert_="all"), plan, quantized=True)
    batch = TrainCollator(processor, spec.prompt, _task())(_samples(demo_dir))["inputs"]
    labels = batch.pop("labels")
    causal_lm_loss(model(**batch).logits, labels).backward()
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    # lora_B starts at zero, so it is the one that gets a gradient from the first step
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)


def test_mllama_text_only_prompt_does_not_change_with_the_date(built):
    spec, processor, _ = built("mllama")
    rendered = spec.prompt.render(processor, "Hello", 0)
    assert f"Today Date: {spec.prompt.date_string}\n" in rendered  # the template's default is today


def _train(run_dir, family, *overrides):
    run_script(
        "train.py",
        f"model={family}_tiny",
        "logger=csv",
        "data.prepare.splits={train: 16, val: 8, test: 8}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    )
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_train_then_evaluate_reproduces_the_test_metrics(tmp_path, family):
    run_dir = tmp_path / "run"
    metrics = _train(run_dir, family, "peft=lora", "trainer.max_steps=2")
    run_script("evaluate.py", f"run_dir={run_dir}")
    (eval_dir,) = (run_dir / "eval").iterdir()
    assert split_metrics(eval_dir / "metrics.json") == {
        k: v for k, v in metrics.items() if k.startswith("test/")
    }
    # the raw generations too: equal metrics alone could be two different sets of parse failures
    trained = (run_dir / "predictions" / "test.jsonl").read_text()
    assert (eval_dir / "predictions" / "test.jsonl").read_text() == trained


@pytest.mark.slow
@pytest.mark.parametrize("peft", ["qlora", "dora", "none"])
def test_mllama_trains_with_qlora_dora_and_full_fine_tuning(tmp_path, peft):
    metrics = _train(tmp_path / "run", "mllama", f"peft={peft}", "trainer.max_steps=1")
    assert "test/f1_macro" in metrics
