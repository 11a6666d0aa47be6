"""mmlearn.json's prompt recipe, filled in and passed to the processor as recorded, gives exactly the
inputs the family's prompt format builds: for every tiny family, with and without images."""

from __future__ import annotations

import re

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image, ImageOps

from mmlearn.artefacts.prompt_recipe import IMAGE, prompt_recipe, user_prompt
from mmlearn.artefacts.snippet import EXAMPLE_MARKER, loading_snippet
from mmlearn.data.modality import Modality
from mmlearn.sample import Sample
from mmlearn.tasks import MultiLabelTask
from mmlearn.tasks.captioning import CaptioningTask
from mmlearn.tasks.multiple_choice import MultipleChoiceTask
from tests.conftest import CONF, TEXT_ENCODER_PRESETS, compose

TINY = sorted(p.stem for p in (CONF / "model").glob("*_tiny.yaml"))
TEXTS = ["is it {urgent}? 50% off", "  a longer post, with two   spaces and a brace }"]


def _plain_inputs(processor, recipe: dict, texts: list[str], image, with_image: bool = True) -> dict:
    """What code without mmlearn does with the recipe (the model card's snippet, as data)."""
    call = recipe["processor_call"]
    suffix = "" if with_image else "_without_image"
    kwargs = {"padding": call["padding"], "padding_side": call["padding_side"], **call["kwargs"]}
    if "segments" in recipe:
        segments = recipe["segments" + suffix]
        prompts = [
            [image if part == IMAGE else part.replace("{text}", t) for part in segments] for t in texts
        ]
        return dict(processor(text=prompts, return_tensors="pt", **kwargs))
    prompts = [recipe["template" + suffix].replace("{text}", t) for t in texts]
    if with_image and call["images"] == "flat":
        kwargs["images"] = [image] * len(texts)
    elif with_image and call["images"] == "nested":
        kwargs["images"] = [[image] for _ in texts]
    inputs = dict(processor(text=prompts, return_tensors="pt", **kwargs))
    return {k: v for k, v in inputs.items() if k not in call["drop"]}


@pytest.fixture(scope="module", params=TINY)
def family(request, offline_env):
    cfg = compose([f"model={request.param}", "paths.root_dir=/tmp/mmlearn-recipe"])
    spec = instantiate(cfg.model, _convert_="all")
    return spec, spec.load_processor()


@pytest.mark.parametrize("modality", ["text_image", "text", "image"])
def test_recipe_gives_the_formats_inputs(family, modality):
    spec, processor = family
    modality = Modality(modality)
    if not modality.image and spec.family == "paligemma2":
        pytest.skip("PaliGemma needs an image in every prompt")
    if modality.image and spec.name in TEXT_ENCODER_PRESETS:
        pytest.skip("a text encoder reads text only")
    task = MultiLabelTask(["red", "blue"], "Labels: {labels}. Answer with a JSON array.")
    recipe = prompt_recipe(spec.prompt, processor, task, modality)
    image = Image.new("RGB", (56, 56), (200, 30, 30))
    texts = [t.strip() for t in TEXTS]  # the readers strip the text
    samples = [Sample(str(i), t if modality.text else None, None, ()) for i, t in enumerate(texts)]
    prompts = [task.prompt(s) for s in samples]
    expected = spec.prompt.encode(processor, prompts, [[image] if modality.image else [] for _ in samples])
    actual = _plain_inputs(processor, recipe, texts, image)
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
    if "template_without_image" in recipe or "segments_without_image" in recipe:
        bare = spec.prompt.encode(processor, prompts, [[] for _ in samples])
        plain = _plain_inputs(processor, recipe, texts, image, with_image=False)
        assert torch.equal(plain["input_ids"], bare["input_ids"])


class _RecordingModel:
    """Stands in for the model in the card's code: keeps what `generate` was given, generates nothing."""

    def generate(self, **inputs):
        self.inputs = inputs
        return inputs["input_ids"]


@pytest.mark.parametrize("modality", ["text_image", "text", "image"])
def test_card_code_builds_the_formats_inputs(family, modality, tmp_path):
    """The card's `fill` and `answer`, run as written for this family and modality."""
    spec, processor = family
    modality = Modality(modality)
    if not modality.image and spec.family == "paligemma2":
        pytest.skip("PaliGemma needs an image in every prompt")
    if spec.name in TEXT_ENCODER_PRESETS:
        pytest.skip("a text encoder answers through a head: the card's generate snippet does not apply")
    task = MultiLabelTask(["red", "blue"], "Labels: {labels}. Answer with a JSON array.")
    recipe = prompt_recipe(spec.prompt, processor, task, modality)
    described = {
        "artefact": "adapter",
        "loading": {"quantization": None},
        "prompt": recipe,
        "data": {"uses_text": modality.text, "uses_image": modality.image},
    }
    code = loading_snippet(described)
    namespace = {"torch": torch, "re": re, "Image": Image, "ImageOps": ImageOps, "processor": processor}
    namespace.update(prompt=recipe, model=_RecordingModel())
    namespace["card"] = {"decoding": {"generate_kwargs": {}, "batch_decode": {"skip_special_tokens": True}}}
    exec(code[code.index("def fill") : code.index(EXAMPLE_MARKER)], namespace)
    image_file = tmp_path / "red.png"
    Image.new("RGB", (56, 56), (200, 30, 30)).save(image_file)
    texts = [t.strip() for t in TEXTS]
    namespace["answer"]([{"text": t, "image": str(image_file)} for t in texts])
    samples = [Sample(str(i), t if modality.text else None, None, ()) for i, t in enumerate(texts)]
    images = [[Image.open(image_file).convert("RGB")] if modality.image else [] for _ in samples]
    expected = spec.prompt.encode(processor, [task.prompt(s) for s in samples], images)
    given = namespace["model"].inputs
    assert set(given) == set(expected)
    for key, value in expected.items():
        assert torch.equal(given[key], value), key


def test_multiple_choice_user_prompt_fills_to_the_tasks_prompt():
    task = MultipleChoiceTask("Answer with the option's letter from the given choices directly.", "{letter}")
    sample = Sample(
        "q",
        "Which is a mammal?",
        None,
        ("B",),
        choices=("trout", "whale", "owl"),
        context="Think of the sea.",
    )
    template = user_prompt(task, uses_text=True)
    filled = (
        template.replace("{text}", sample.text)
        .replace("{context}", sample.context)
        .replace("{options}", "(A) trout (B) whale (C) owl")
    )
    assert filled == task.prompt(sample)


def test_captioning_user_prompt_is_the_instruction():
    task = CaptioningTask("Describe the image in one sentence.", "a long caption")
    assert user_prompt(task, uses_text=False) == "Describe the image in one sentence."
