"""What `conf/model/*.yaml` describes: where a checkpoint lives and how to load and prompt it."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from mmlearn.io import normalise_modes


@dataclass
class ModelSpec:
    """One VLM checkpoint. `build` (tiny presets only) writes the checkpoint when `pretrained` is missing."""

    name: str
    family: str
    pretrained: str
    prompt: Any
    towers: dict[str, list[str]]  # tower -> parameter-name prefixes (vision, projector, language)
    lora_target_modules: dict[str, str | None]  # tower -> regex over module names LoRA may target
    skip_quantization_modules: list[str]
    torch_dtype: str
    revision: str | None
    trust_remote_code: bool
    gradient_checkpointing: bool
    vision_cache: dict  # per-image cache of the frozen vision side (mmlearn.models.vision_cache)
    attn_implementation: str | None
    processor_kwargs: dict
    build: Callable[..., Path] | None

    def ensure_local(self) -> None:
        """Build a tiny preset once, atomically, so concurrent runs never see a half-written checkpoint."""
        if self.build is None or Path(self.pretrained, "config.json").is_file():
            return
        target = Path(self.pretrained)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        self.build(staging)
        normalise_modes(staging)  # mkdtemp and safetensors leave 0700/0600 behind
        try:
            os.replace(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process finished first
            if not Path(self.pretrained, "config.json").is_file():
                raise

    def load_processor(self):
        self.ensure_local()
        return AutoProcessor.from_pretrained(
            self.pretrained,
            revision=self.revision,
            trust_remote_code=self.trust_remote_code,
            # a copy: processors write their saved settings into the dicts they are given
            **copy.deepcopy(self.processor_kwargs),
        )

    def _kwargs(self, quantization, device_map) -> dict[str, Any]:
        """`from_pretrained`'s loading arguments (every model kind: VLMs, text encoders)."""
        kwargs: dict[str, Any] = {
            "revision": self.revision,
            "trust_remote_code": self.trust_remote_code,
            "dtype": getattr(torch, self.torch_dtype),
            "use_safetensors": True,
        }
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        if quantization is not None:
            kwargs["quantization_config"] = quantization
            kwargs["device_map"] = device_map or {"": rank_device(os.environ, torch.cuda.is_available())}
        return kwargs

    def load_model(self, quantization=None, device_map=None):
        self.ensure_local()
        model = AutoModelForImageTextToText.from_pretrained(
            self.pretrained, **self._kwargs(quantization, device_map)
        )
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model


def rank_device(env, cuda_available: bool) -> str:
    """This process's own GPU: a quantised model is placed at load time, before the Trainer exists, so
    under DDP each rank must name its device or all ranks land on cuda:0. LOCAL_RANK comes from
    Lightning's launcher and torchrun, SLURM_LOCALID from srun (Lightning's SLURMEnvironment reads it)."""
    if cuda_available:
        return f"cuda:{int(env.get('LOCAL_RANK', env.get('SLURM_LOCALID', 0)))}"
    return "cpu"
