"""Putting a PEFT adapter (or nothing, for a full fine-tune) on a loaded model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from peft import (
    LoraConfig,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    prepare_model_for_kbit_training,
)
from safetensors.torch import load_file

from mmlearn.models.towers import (
    TowerPlan,
    check_tower_map,
    check_trainable,
    full_tower_modules,
    lora_target_regex,
    set_full_towers,
)


def attach_adapter(model, spec, adapter: LoraConfig | None, plan: TowerPlan, quantized: bool):
    """LoRA on the towers set to `lora` (or `adapter.target_modules` when the config names them),
    full training of the towers set to `full`, everything else frozen; then check exactly that.
    No adapter and every tower frozen: the base model as released (zero-shot evaluation, 4-bit too)."""
    check_tower_map(model, spec.towers)
    trains = adapter is not None or any(mode != "frozen" for mode in plan.modes.values())
    if quantized and trains:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if adapter is None:
        if quantized and trains:
            raise ValueError("a 4-bit model cannot be fully fine-tuned: use peft=qlora with an adapter")
        set_full_towers(model, spec, plan)
    else:
        targets = adapter.target_modules or lora_target_regex(spec, plan)
        if targets is None:
            raise ValueError("no tower is set to lora and peft.adapter.target_modules is empty")
        full = full_tower_modules(spec, plan, quantized)
        model = get_peft_model(
            model, dataclasses.replace(adapter, target_modules=targets, modules_to_save=full or None)
        )
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"adapter target_modules {targets!r} matched no trainable module")
    check_trainable(model, spec, plan)
    return model


def load_adapter(model, adapter_dir):
    """Load a saved adapter and refuse one whose weights do not all reach the model."""
    model = PeftModel.from_pretrained(model, adapter_dir)
    saved = set(load_file(Path(adapter_dir) / "adapter_model.safetensors"))
    placed = set(get_peft_model_state_dict(model))
    if saved != placed:
        stray = sorted(saved - placed)[:5]
        raise ValueError(
            f"adapter {adapter_dir} does not fit this model: {len(saved - placed)} saved weights "
            f"have no place in it (e.g. {stray}); {len(placed - saved)} adapter weights were not loaded"
        )
    return model


def parameter_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def describe_trainable(model) -> str:
    trainable, total = parameter_counts(model)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.3f}%)"
