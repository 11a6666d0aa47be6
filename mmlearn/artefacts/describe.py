"""mmlearn.json: what a saved adapter (or model) needs around it to be used without mmlearn, read from
the run's config objects and the module that produced the test predictions."""

from __future__ import annotations

import copy
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import mmlearn
from mmlearn.artefacts.answers import task_description
from mmlearn.artefacts.prompt_recipe import prompt_recipe
from mmlearn.decoding import GenerateDecoder, generate_kwargs

SCHEMA_VERSION = 1
FILE = "mmlearn.json"
AUTO_CLASS = "AutoModelForImageTextToText"


def is_local(pretrained: str) -> bool:
    """`model.pretrained` names a directory on this machine rather than a Hugging Face Hub id."""
    path = Path(pretrained).expanduser()
    return path.is_absolute() or pretrained.startswith((".", "~")) or path.exists()


def base_model(spec) -> dict:
    local = is_local(spec.pretrained)
    return {
        "id": None if local else spec.pretrained,
        "path": str(Path(spec.pretrained).expanduser().resolve()) if local else None,
        "revision": spec.revision,
        "family": spec.family,
        "preset": spec.name,
    }


def _settings(node) -> dict | None:
    """A config node as plain data, without its `_target_`."""
    if node is None:
        return None
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"}


def loading(spec, quantization) -> dict:
    return {
        "auto_class": getattr(spec, "auto_class", AUTO_CLASS),  # a text encoder's: AutoModel
        "torch_dtype": spec.torch_dtype,
        "attn_implementation": spec.attn_implementation,
        "trust_remote_code": spec.trust_remote_code,
        "quantization": _settings(quantization),  # BitsAndBytesConfig(**this) under peft=qlora
        "processor": "this folder (AutoProcessor.from_pretrained), with the run's processor settings",
    }


def decoding(decoding_cfg: DictConfig, module) -> dict:
    """The greedy `generate` call behind mmlearn's `decoding=generate` answers; for another decoder, the
    plain greedy call with the longest answer's budget (it does not reproduce that decoder's answers)."""
    decoder, context = module.decoder, module.decoding_context
    if callable(getattr(decoder, "describe", None)):  # a decoder that does not generate (a head)
        return decoder.describe()
    if isinstance(decoder, GenerateDecoder):
        kwargs = decoder.generate_kwargs(context)
    else:
        kwargs = generate_kwargs(context, context.answer_budget)
    return {
        "decoder": decoder.name,
        "settings": _settings(decoding_cfg),
        "generate_kwargs": kwargs,
        "batch_decode": {"skip_special_tokens": True},
        "plain_generate_reproduces_predictions": module.decoder.name == "generate",
    }


def describe_run(cfg: DictConfig, module, datamodule, metrics: dict[str, float]) -> dict:
    """The mmlearn.json of a training run's `adapter/` (or `model/` for a full fine-tune)."""
    spec, modality = module.spec, datamodule.modality
    return {
        "schema_version": SCHEMA_VERSION,
        "artefact": "adapter" if module.is_peft else "full_model",
        "mmlearn_version": mmlearn.__version__,
        "run_name": cfg.run_name,
        "base_model": base_model(spec),
        "loading": loading(spec, cfg.peft.quantization),
        "training": {
            "peft": cfg.peft.name,
            "adapter": _settings(cfg.peft.adapter),
            "towers": dict(cfg.peft.towers),
            "seed": cfg.seed,
        },
        "data": {
            "name": datamodule.name,
            "modality": modality.name,
            "uses_text": modality.text,
            "uses_image": modality.image,
            "eval_batch_size": datamodule.eval_batch_size,
        },
        "task": task_description(module.task),
        "prompt": prompt_recipe(spec.prompt, module.processor, module.task, modality),
        "decoding": decoding(cfg.decoding, module),
        "metrics": dict(sorted(metrics.items())),
    }


def describe_export(description: dict, run_dir: Path, merged: bool) -> dict:
    """An export's mmlearn.json: its run's, saying where it came from; a merged model loads unquantised."""
    exported = copy.deepcopy(description)
    exported["export"] = {"run_dir": str(Path(run_dir).resolve()), "merged": merged}
    if merged:
        exported["artefact"] = "merged_model"
        exported["loading"]["quantization"] = None
    return exported
