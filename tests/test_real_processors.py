"""The real checkpoints' processor files (../shared/real_processors: tokenizer, chat template, image
processor, generation config; no weights) under random tiny weights: mmlearn's prompt equals the real
template's, labels cover exactly the reply and its end token under the real tokenizer, image-token
counts equal the real processor's at the family's configured budget, and every end token of the real
generation config stops generation. Mllama's tokenizer.json is not in the shared folder: only its real
chat template is checked, rendered through the tiny preset's processor. IDEFICS is absent (no IDEFICS
processor files, only the Llama-2 tokenizer it builds on)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoProcessor, LogitsProcessor, LogitsProcessorList
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from mmlearn.decoding import generate_answers
from tests.conftest import REPO, compose, run_script

SHARED = Path(REPO).parent / "shared" / "real_processors"
# conf/model/<family>.yaml -> folder of real files
FOLDERS = {"qwen2vl": "qwen2vl", "qwen2_5vl": "qwen2_5vl", "llava": "llava"}
FAMILIES = list(FOLDERS)

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the real processor files are not here ({SHARED} is missing)"
)

QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
# What the model cards' chat templates give for each case, written out by hand.
EXPECTED = {
    "qwen": {
        "text": QWEN_SYSTEM + "<|im_start|>user\nIs it red?<|im_end|>\n<|im_start|>assistant\n",
        "image": QWEN_SYSTEM + f"<|im_start|>user\n{QWEN_IMAGE}Is it red?<|im_end|>\n<|im_start|>assistant\n",
        "shots": QWEN_SYSTEM
        + f"<|im_start|>user\n{QWEN_IMAGE}Which colour?<|im_end|>\n<|im_start|>assistant\nblue<|im_end|>\n"
        + f"<|im_start|>user\n{QWEN_IMAGE}Is it red?<|im_end|>\n<|im_start|>assistant\n",
    },
    "llava": {
        "text": "USER: Is it red? ASSISTANT:",
        "image": "USER: <image>\nIs it red? ASSISTANT:",
        "shots": "USER: <image>\nWhich colour? ASSISTANT: blue USER: <image>\nIs it red? ASSISTANT:",
    },
}
END_OF_TURN = {"qwen2vl": "<|im_end|>", "qwen2_5vl": "<|im_end|>", "llava": "</s>"}


def _image(width: int = 56, height: int = 56, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def _overrides(family: str, path: Path) -> list[str]:
    return [f"model={family}", f"model.pretrained={path}", "model.torch_dtype=float32"]


@pytest.fixture(scope="session")
def real_models(offline_env, tmp_path_factory) -> dict[str, Path]:
    """One random-weight checkpoint per family, built once per session on the real files."""
    from mmlearn.models.tiny.real import build_real

    root = tmp_path_factory.mktemp("real")
    return {
        family: build_real(
            SHARED / folder,
            root / family,
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            seed=0,
            output_logit_scale=10.0,
        )
        for family, folder in FOLDERS.items()
    }


@pytest.fixture(scope="session")
def specs(real_models):
    return {
        f: instantiate(compose(_overrides(f, path)).model, _convert_="all") for f, path in real_models.items()
    }


@pytest.fixture(scope="session")
def processors(specs):
    return {f: spec.load_processor() for f, spec in specs.items()}


def test_the_built_checkpoint_keeps_the_real_vocabulary_and_token_ids(real_models):
    for family, path in real_models.items():
        real = json.loads((SHARED / FOLDERS[family] / "config.json").read_text())
        built = json.loads((path / "config.json").read_text())
        real_text, built_text = real.get("text_config", real), built.get("text_config", built)
        assert built_text["vocab_size"] == real_text["vocab_size"]
        assert built_text["hidden_size"] <= 64
        for key in ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id"):
            if key in real:
                assert built[key] == real[key], (family, key)
        for key in ("patch_size", "spatial_merge_size", "temporal_patch_size", "image_size"):
            if key in real["vision_config"]:
                assert built["vision_config"][key] == real["vision_config"][key], (family, key)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", ["text", "image", "shots"])
def test_prompt_equals_the_real_chat_template(specs, processors, family, case):
    spec, processor = specs[family], processors[family]
    shots = [("Which colour?", [_image(seed=1)], "blue")] if case == "shots" else ()
    rendered = spec.prompt.render(processor, "Is it red?", 0 if case == "text" else 1, shots)
    assert rendered == EXPECTED["llava" if family == "llava" else "qwen"][case]


LLAMA3 = "<|begin_of_text|>"
LLAMA3_TURN = "<|start_header_id|>{}<|end_header_id|>\n\n"
LLAMA3_DATE = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
LLAMA3_ASK = LLAMA3_TURN.format("assistant")
MLLAMA_EXPECTED = {
    "text": LLAMA3
    + LLAMA3_TURN.format("system")
    + LLAMA3_DATE
    + LLAMA3_TURN.format("user")
    + "Is it red?<|eot_id|>"
    + LLAMA3_ASK,
    "image": LLAMA3 + LLAMA3_TURN.format("user") + "<|image|>Is it red?<|eot_id|>" + LLAMA3_ASK,
    "shots": LLAMA3
    + LLAMA3_TURN.format("user")
    + "<|image|>Which colour?<|eot_id|>"
    + LLAMA3_ASK
    + "blue<|eot_id|>"
    + LLAMA3_TURN.format("user")
    + "<|image|>Is it red?<|eot_id|>"
    + LLAMA3_ASK,
}


@pytest.fixture(scope="session")
def mllama(offline_env, tmp_path_factory):
    """conf/model/mllama.yaml's prompt on the tiny preset's processor carrying the real chat template
    (the text a template renders does not depend on the vocabulary; the token ids are not checked)."""
    from mmlearn.models.tiny import build_preset

    path = build_preset("mllama_tiny", tmp_path_factory.mktemp("mllama") / "tiny")
    spec = instantiate(compose(["model=mllama", f"model.pretrained={path}"]).model, _convert_="all")
    processor = spec.load_processor()
    processor.chat_template = json.loads((SHARED / "mllama" / "chat_template.json").read_text())[
        "chat_template"
    ]
    return spec, processor


@pytest.mark.parametrize("case", ["text", "image", "shots"])
def test_mllama_prompt_equals_the_real_chat_template(mllama, case):
    spec, processor = mllama
    shots = [("Which colour?", [_image(seed=1)], "blue")] if case == "shots" else ()
    rendered = spec.prompt.render(processor, "Is it red?", 0 if case == "text" else 1, shots)
    assert rendered == MLLAMA_EXPECTED[case]


def _reference_ids(family: str, prompt: str, answer: str, image) -> tuple[list[int], int]:
    """The real processor's tokens of the whole conversation (the template's own assistant turn, cut at
    its end-of-turn token, which LLaVA's template leaves to the tokenizer's eos), and the prompt length."""
    processor = AutoProcessor.from_pretrained(SHARED / FOLDERS[family])
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
    reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    head = processor.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    whole = processor.apply_chat_template([user, reply], tokenize=False)
    assert whole.startswith(head)
    end = END_OF_TURN[family]
    turn = whole[len(head) :].split(end)[0].rstrip() + end
    kwargs = {"add_special_tokens": True}
    full = processor(text=[head + turn], images=[image], return_tensors="pt", **kwargs)["input_ids"][0]
    only = processor(text=[head], images=[image], return_tensors="pt", **kwargs)["input_ids"][0]
    assert full[: len(only)].tolist() == only.tolist()
    return full.tolist(), len(only)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("answer", ["red", "not informative"])
def test_labels_cover_exactly_the_reply_and_its_end_token(specs, processors, family, answer):
    image = _image()
    batch = specs[family].prompt.encode(processors[family], ["Is it red?"], [[image]], answers=[answer])
    keep = batch["attention_mask"][0].bool()
    ids, labels = batch["input_ids"][0][keep].tolist(), batch["labels"][0][keep].tolist()
    reference, n_prompt = _reference_ids(family, "Is it red?", answer, image)
    assert ids == reference
    assert labels == [-100] * n_prompt + reference[n_prompt:]
    end_id = processors[family].tokenizer.convert_tokens_to_ids(END_OF_TURN[family])
    assert labels[-1] == end_id


def _configured(family: str) -> dict:
    """conf/model/<family>.yaml's processor_kwargs, read afresh (loading a processor writes into the dict
    it was given)."""
    return OmegaConf.to_container(compose([f"model={family}"]).model.processor_kwargs)


def _expected_image_tokens(family: str, width: int, height: int) -> int:
    vision = json.loads((SHARED / FOLDERS[family] / "config.json").read_text())["vision_config"]
    if family == "llava":
        return (vision["image_size"] // vision["patch_size"]) ** 2
    factor = vision.get("patch_size", vision.get("spatial_patch_size")) * 2  # the 2x2 merge
    budget = _configured(family)
    h, w = smart_resize(height, width, factor, budget["min_pixels"], budget["max_pixels"])
    return (h // factor) * (w // factor)


# 1200x900 is over the configured budget: the checkpoint's preprocessor_config.json has its own
# max_pixels (1003520 here, 12845056 in the released Qwen2.5-VL files), which overrides a passed
# `size`; conf/model/qwen2*vl.yaml therefore set min_pixels/max_pixels, which win over it.
SIZES = [pytest.param(family, size) for family in FAMILIES for size in [(56, 56), (300, 200), (1200, 900)]]


@pytest.mark.parametrize(("family", "size"), SIZES)
def test_image_tokens_per_image_equal_the_real_processors_at_the_configured_budget(
    specs, processors, family, size
):
    spec, processor = specs[family], processors[family]
    real = AutoProcessor.from_pretrained(SHARED / FOLDERS[family], **_configured(family))
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    image = _image(*size)
    batch = spec.prompt.encode(processor, ["Is it red?"], [[image]])
    count = int((batch["input_ids"] == image_id).sum())
    text = spec.prompt.render(real, "Is it red?", 1)
    by_real = int((real(text=[text], images=[image], return_tensors="pt")["input_ids"] == image_id).sum())
    assert count == by_real == _expected_image_tokens(family, *size), (count, by_real)
    model = spec.load_model()
    with torch.no_grad():
        model(**batch)  # the vision tower's features fill exactly these tokens


class ForceToken(LogitsProcessor):
    """Make `token` the only choice at every step: a model that stops at it produces it once."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token] = 0.0
        return forced


@pytest.fixture(scope="session")
def modules(real_models, demo_dir):
    from mmlearn.building import build_datamodule, build_module

    built = {}
    for family, path in real_models.items():
        cfg = compose(
            [
                *_overrides(family, path),
                "paths.root_dir=/tmp/mmlearn-real-processors",
                f"data.root={demo_dir}",
                "data.prepare.splits={train: 16, val: 8, test: 8}",
            ]
        )
        built[family] = build_module(cfg, build_datamodule(cfg).task).eval()
    return built


@pytest.mark.parametrize("family", FAMILIES)
def test_every_end_token_of_the_real_generation_config_stops_generation(modules, family):
    module = modules[family]
    config = json.loads((SHARED / FOLDERS[family] / "generation_config.json").read_text())
    ends = config["eos_token_id"] if isinstance(config["eos_token_id"], list) else [config["eos_token_id"]]
    inputs = module.spec.prompt.encode(module.processor, ["Is it red?"], [[_image()]])
    for end in ends:
        new = generate_answers(
            module.decoding_context,
            inputs,
            decode=False,
            max_new_tokens=4,
            logits_processor=LogitsProcessorList([ForceToken(end)]),
        )
        assert new[0].tolist() == [end], (family, end)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_trains_and_evaluates_with_every_decoder(tmp_path, real_models, demo_dir, family):
    run = tmp_path / family
    data = [f"data.root={demo_dir}", "data.prepare.splits={train: 16, val: 8, test: 8}", "data.batch_size=4"]
    run_script(
        "train.py",
        *_overrides(family, real_models[family]),
        *data,
        "logger=csv",
        "trainer.max_steps=2",
        f"hydra.run.dir={run}",
    )
    assert "test/f1_macro" in json.loads((run / "metrics.json").read_text())
    for decoding in ("generate", "constrained", "score"):
        run_script("evaluate.py", f"run_dir={run}", f"decoding={decoding}")
    assert len(list((run / "eval").iterdir())) == 3


def test_loading_a_processor_leaves_the_configured_kwargs_as_they_were(specs):
    """Qwen2VLImageProcessor writes the checkpoint's saved max_pixels into the `size` dict it is given:
    ModelSpec passes a copy, so the config object (and the next load) keeps the user's budget."""
    configured = {"size": {"shortest_edge": 3136, "longest_edge": 401408}}
    spec = dataclasses.replace(specs["qwen2vl"], processor_kwargs=json.loads(json.dumps(configured)))
    spec.load_processor()
    assert spec.processor_kwargs == configured
