"""Per-tower trainability: the vision tower, the projector and the language model are each `frozen`,
`lora` or `full`, and may each have their own learning rate.

A family's config names each tower by parameter-name prefixes (the longest matching prefix wins, so a
projector nested inside the vision module is still its own tower) and gives a LoRA target regex per
tower. LoRA is attached only to towers set to `lora`; towers set to `full` train every weight (saved
with the adapter through PEFT's `modules_to_save`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

TOWERS = ("vision", "projector", "language")
MODES = ("frozen", "lora", "full")
_WRAPPERS = re.compile(r"\.(modules_to_save\.[^.]+|original_module|base_layer)(?=\.|$)")
_LORA_PARAM = re.compile(r"\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)\.")


@dataclass(frozen=True)
class TowerPlan:
    modes: dict[str, str]
    lr: dict[str, float | None]

    def __post_init__(self) -> None:
        for what, given in (("peft.towers", self.modes), ("peft.tower_lr", self.lr)):
            if set(given) != set(TOWERS):
                raise ValueError(f"{what} must set exactly {list(TOWERS)}, got {sorted(given)}")
        bad = {t: m for t, m in self.modes.items() if m not in MODES}
        if bad:
            raise ValueError(f"peft.towers: each tower is one of {MODES}, got {bad}")

    def towers(self, mode: str) -> list[str]:
        return [t for t in TOWERS if self.modes[t] == mode]


def base_name(name: str) -> str:
    """A parameter or module name as in the bare model: PEFT prefixes and wrappers removed."""
    name = name.removeprefix("base_model.model.")
    name = _LORA_PARAM.split(name)[0] if _LORA_PARAM.search(name) else name
    return _WRAPPERS.sub("", name)


def tower_of(name: str, towers: dict[str, list[str]]) -> str | None:
    name = base_name(name)
    best, length = None, -1
    for tower, prefixes in towers.items():
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > length:
                best, length = tower, len(prefix)
    return best


def check_tower_map(model, towers: dict[str, list[str]]) -> None:
    """Every parameter belongs to exactly one tower, or the family's `towers` config is wrong."""
    orphans = [n for n, _ in model.named_parameters() if tower_of(n, towers) is None]
    if orphans:
        raise ValueError(
            f"{len(orphans)} parameters belong to no tower in model.towers (e.g. {orphans[:3]}); "
            f"towers: {towers}"
        )


def lora_target_regex(spec, plan: TowerPlan) -> str | None:
    """One regex over full module names: the union of the LoRA regexes of the towers set to `lora`."""
    parts = []
    for tower in plan.towers("lora"):
        regex = spec.lora_target_modules.get(tower)
        if not regex:
            raise ValueError(
                f"model {spec.name!r} has no lora_target_modules.{tower}: cannot set {tower}=lora"
            )
        parts.append(f"(?:{regex})")
    return "|".join(parts) or None


def full_tower_modules(spec, plan: TowerPlan, quantized: bool) -> list[str]:
    """Module prefixes trained in full next to an adapter (PEFT's modules_to_save)."""
    modules = []
    for tower in plan.towers("full"):
        for prefix in spec.towers[tower]:
            nested = [
                (other, p)
                for other in TOWERS
                if plan.modes[other] != "full"
                for p in spec.towers[other]
                if p.startswith(prefix + ".")
            ]
            if nested:
                other, p = nested[0]
                raise ValueError(
                    f"{tower}=full would also train {p} ({other}={plan.modes[other]}) in {spec.name}: "
                    f"set {other}=full too"
                )
            if quantized and not any(
                prefix == s or prefix.startswith(s + ".") for s in spec.skip_quantization_modules
            ):
                raise ValueError(
                    f"{tower}=full, but {prefix} is quantised to 4 bit under peft=qlora: add it to "
                    "model.skip_quantization_modules or choose lora for that tower"
                )
            modules.append(prefix)
    return modules


def set_full_towers(model, spec, plan: TowerPlan) -> None:
    """Without an adapter: `full` towers train, the others are frozen."""
    if plan.towers("lora"):
        raise ValueError(f"towers {plan.towers('lora')} are set to lora, but peft=none attaches no adapter")
    for name, param in model.named_parameters():
        param.requires_grad_(plan.modes[tower_of(name, spec.towers)] == "full")


def check_trainable(model, spec, plan: TowerPlan) -> None:
    """What requires grad is exactly what the plan says: LoRA weights only in `lora` towers, base
    weights only in `full` towers, and every non-frozen tower has something to train."""
    trained: Counter = Counter()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        tower = tower_of(name, spec.towers)
        expected = "lora" if _LORA_PARAM.search(name) else "full"
        if plan.modes[tower] != expected:
            raise ValueError(f"{name} trains as {expected}, but peft.towers.{tower}={plan.modes[tower]}")
        trained[tower] += 1
    idle = [t for t in TOWERS if plan.modes[t] != "frozen" and not trained[t]]
    if idle:
        raise ValueError(f"towers {idle} are set to train, but none of their parameters requires grad")


def parameter_groups(model, spec, plan: TowerPlan) -> list[dict]:
    """One optimiser group per training tower; a tower's own learning rate when peft.tower_lr sets one."""
    groups = []
    for tower in TOWERS:
        params = [
            p for n, p in model.named_parameters() if p.requires_grad and tower_of(n, spec.towers) == tower
        ]
        if params:
            group = {"params": params, "name": tower}
            if plan.lr[tower] is not None:
                group["lr"] = plan.lr[tower]
            groups.append(group)
    return groups


def describe_towers(model, spec) -> str:
    counts: Counter = Counter()
    totals: Counter = Counter()
    for name, param in model.named_parameters():
        tower = tower_of(name, spec.towers)
        totals[tower] += param.numel()
        if param.requires_grad:
            counts[tower] += param.numel()
    return ", ".join(f"{t} {counts[t]:,} of {totals[t]:,}" for t in TOWERS if totals[t])
