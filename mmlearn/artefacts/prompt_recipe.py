"""The prompt of a run written out for code that does not import mmlearn: the task's user message with
placeholders, the family's full rendering of it (chat template, `<image>` prefix, interleaved
segments), and how the processor is called on it. Filling the placeholders and calling the processor
as recorded gives the exact input ids mmlearn feeds the model (tests/test_adapter_card.py)."""

from __future__ import annotations

from mmlearn.models.formats.idefics import IdeficsPrompt
from mmlearn.models.formats.paligemma import PaliGemmaPrompt
from mmlearn.models.prompting import ChatTemplatePrompt
from mmlearn.sample import Sample

IMAGE = "<image>"  # stands for the image in an interleaved segment list (IDEFICS)
_OPTIONS = "\x00options\x00"  # a sentinel choice, replaced by the {options} placeholder

PLACEHOLDERS = {
    "{text}": "the sample's text, stripped of surrounding whitespace",
    "{context}": "the question's hint, or N/A without one",
    "{options}": 'the options lettered in order, "(A) first (B) second ..." (joined by one space)',
}
IMAGE_LOADING = "PIL.ImageOps.exif_transpose(PIL.Image.open(path)).convert('RGB')"


def user_prompt(task, uses_text: bool) -> str:
    """The task's user message with `{text}` (and, for multiple choice, `{context}`, `{options}`)."""
    sample = Sample(
        id="{id}",
        text="{text}" if uses_text else None,
        image_path=None,
        labels=(),
        choices=(_OPTIONS,),
        context="{context}",
    )
    return task.prompt(sample).replace(f"(A) {_OPTIONS}", "{options}")


def _rendering(prompt_format, processor, prompt: str, n_images: int) -> dict:
    """The text (or IDEFICS segment list) handed to the processor for one prompt with `n_images`."""
    if callable(getattr(prompt_format, "recipe", None)):  # a format that records itself (text encoders)
        return {"template": prompt_format.recipe(processor, prompt)["template"]}
    if isinstance(prompt_format, ChatTemplatePrompt):
        return {"template": prompt_format.render(processor, prompt, n_images)}
    if isinstance(prompt_format, PaliGemmaPrompt):
        return {"template": processor.image_token * n_images + prompt}
    if isinstance(prompt_format, IdeficsPrompt):
        return {"segments": ["User:", *[IMAGE] * n_images, f"{prompt}\nAssistant:"]}
    raise TypeError(f"no recipe for the prompt format {type(prompt_format).__name__}")


def processor_call(prompt_format, uses_image: bool) -> dict:
    """How images are passed, which extra arguments the processor takes besides left padding, and which
    of its outputs are not model inputs."""
    if callable(getattr(prompt_format, "recipe", None)):
        return prompt_format.recipe(None, "")["processor_call"]
    if isinstance(prompt_format, IdeficsPrompt):
        images, kwargs = "interleaved", {"add_end_of_utterance_token": False}
    elif isinstance(prompt_format, ChatTemplatePrompt):
        images = "nested" if prompt_format.nested_images else "flat"
        kwargs = dict(prompt_format.processor_call_kwargs())
    else:
        images, kwargs = "flat", {}
    return {
        "images": images if uses_image else "none",
        "padding": True,
        "padding_side": "left",
        "kwargs": kwargs,
        # PaliGemma's processor returns all -100 `labels` without a suffix: not a generate input
        "drop": ["labels"] if isinstance(prompt_format, PaliGemmaPrompt) else [],
    }


def prompt_recipe(prompt_format, processor, task, modality) -> dict:
    """mmlearn.json's `prompt` section."""
    text = user_prompt(task, modality.text)
    n_images = 1 if modality.image else 0
    recipe = {"format": type(prompt_format).__name__, "user_prompt": text, "images_per_prompt": n_images}
    recipe.update(_rendering(prompt_format, processor, text, n_images))
    if modality.image and not isinstance(prompt_format, PaliGemmaPrompt):
        without = _rendering(prompt_format, processor, text, 0)
        recipe.update({f"{key}_without_image": value for key, value in without.items()})
    rendered = str(recipe.get("template", recipe.get("segments")))
    recipe["placeholders"] = {k: v for k, v in PLACEHOLDERS.items() if k in rendered}
    recipe["image_loading"] = IMAGE_LOADING if modality.image else None
    recipe["processor_call"] = processor_call(prompt_format, modality.image)
    return recipe
