"""A head on a loaded model, trained with the tower plan: LoRA (or QLoRA) on the towers set to `lora`,
full training of the towers set to `full`, a frozen backbone otherwise; the head always trains. With an
adapter the head is one of PEFT's `modules_to_save` (saved in the adapter, restored by
`PeftModel.from_pretrained`); without one (peft=none) it is saved next to the model as head.safetensors."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from peft import get_peft_model, prepare_model_for_kbit_training
from safetensors.torch import load_file, save_file

from mmlearn.heads.classifier import unwrapped
from mmlearn.heads.layers import HEAD, ClassificationHead
from mmlearn.models.adapters import load_adapter
from mmlearn.models.towers import (
    TOWERS,
    TowerPlan,
    check_tower_map,
    check_trainable,
    full_tower_modules,
    lora_target_regex,
    set_full_towers,
)

HEAD_FILE = "head.safetensors"
log = logging.getLogger(__name__)


class _Backbone:
    """The model's parameters without the head's, for the tower checks (the head is in no tower)."""

    def __init__(self, model) -> None:
        self.model = model

    def named_parameters(self):
        return ((n, p) for n, p in self.model.named_parameters() if f"{HEAD}." not in n)


def towers_present(spec, plan: TowerPlan) -> TowerPlan:
    """A text encoder has no vision tower or projector (`model.towers.vision: []`): whatever peft= sets
    them to, they have nothing to train, and count as frozen."""
    absent = [t for t in TOWERS if not spec.towers.get(t) and plan.modes[t] != "frozen"]
    if not absent:
        return plan
    log.info("model=%s has no %s tower: peft.towers.%s trains nothing there", spec.name, absent, absent)
    return TowerPlan(modes={t: "frozen" if t in absent else m for t, m in plan.modes.items()}, lr=plan.lr)


def head_parameters(model) -> list:
    return [p for n, p in model.named_parameters() if f"{HEAD}." in n and p.requires_grad]


def new_head(model, num_labels: int, settings: dict) -> ClassificationHead:
    width = model.config.get_text_config().hidden_size
    return ClassificationHead(
        width,
        num_labels,
        dropout=settings["dropout"],
        mlp=list(settings["mlp"]),
        activation=settings["activation"],
    )


def attach_head(model, spec, head, adapter, plan, quantized: bool):
    check_tower_map(model, spec.towers)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if adapter is None:
        if quantized and plan.towers("full"):
            raise ValueError(
                "a 4-bit backbone cannot train in full: set peft.towers.*=frozen or use an adapter"
            )
        set_full_towers(model, spec, plan)
        model.add_module(HEAD, head)
    else:
        targets = adapter.target_modules or lora_target_regex(spec, plan)
        if targets is None:
            raise ValueError(
                "no tower is set to lora and peft.adapter.target_modules is empty (a head on a frozen "
                "backbone: peft=none with peft.towers.{vision,projector,language}=frozen)"
            )
        full = full_tower_modules(spec, plan, quantized)
        model.add_module(HEAD, head)
        model = get_peft_model(
            model, dataclasses.replace(adapter, target_modules=targets, modules_to_save=[*full, HEAD])
        )
    check_trainable(_Backbone(model), spec, plan)
    return model


def load_head_model(spec, base, head, *, adapter, plan, quantized: bool, adapter_dir=None):
    """A new head on `base` (training), or a run's saved head: from its adapter, or from the
    head.safetensors next to a full model (`model.pretrained` pointing at a run's model/)."""
    if adapter_dir is not None:
        base.add_module(HEAD, head)
        return load_adapter(base, adapter_dir)
    model = attach_head(base, spec, head, adapter, plan, quantized)
    saved = Path(spec.pretrained) / HEAD_FILE
    if saved.is_file():
        head.load_state_dict(load_file(saved))
    return model


def save_head(model, directory) -> None:
    state = {
        k: v.detach().cpu().contiguous() for k, v in getattr(unwrapped(model), HEAD).state_dict().items()
    }
    save_file(state, Path(directory) / HEAD_FILE)
