"""A rough GPU-memory estimate, printed before training starts, so an out-of-memory is foreseen.

weights      4-bit NF4 modules: 0.5 byte/param + quantisation constants (one absmax per 64 weights: fp32,
             or with double quantisation 8-bit plus one fp32 per 256 absmax); every other frozen
             parameter at the checkpoint dtype.
trainable    weights (fp32) + fp32 gradients + AdamW's two fp32 moments: 16 bytes per trainable param.
activations  layers x hidden x tokens x batch x bytes x 17 for the language model (Korthikanti et al.
             2022: 34·s·b·h bytes per layer at 2-byte activations, without the attention scores that
             SDPA / flash attention never store; x 1 with gradient checkpointing, which keeps only
             each layer's input), plus the logits: batch x tokens x vocab x
             (bytes + 8) (the fp32 upcast in the loss and its gradient).

Not counted: the CUDA context (~0.5 GiB), allocator fragmentation, a trainable vision tower's
activations, and generation's KV cache during validation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATION_FACTOR = 17
CHECKPOINTED_FACTOR = 1
NF4_BLOCK = 64
DOUBLE_QUANT_BLOCK = 256
GIB = 1024**3


def nf4_bytes_per_param(double_quant: bool) -> float:
    constants = 1 / NF4_BLOCK + 4 / (NF4_BLOCK * DOUBLE_QUANT_BLOCK) if double_quant else 4 / NF4_BLOCK
    return 0.5 + constants


def is_4bit(name: str, module: nn.Module) -> bool:
    """A bitsandbytes 4-bit linear layer of a loaded model."""
    return type(module).__name__ == "Linear4bit"


@dataclass(frozen=True)
class ParameterCounts:
    quantized: int  # weights stored in 4 bits
    frozen: int  # other weights that take no gradient
    trainable: int


def count_parameters(model: nn.Module, quantized: Callable[[str, nn.Module], bool] | None) -> ParameterCounts:
    """Logical parameter counts (a packed 4-bit weight counts its in x out entries)."""
    quantized_weights: set[int] = set()
    n_quantized = 0
    if quantized is not None:
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)  # PEFT's wrapper exposes its base layer's weight
            if (
                isinstance(weight, torch.Tensor)
                and id(weight) not in quantized_weights
                and quantized(name, module)
            ):
                quantized_weights.add(id(weight))
                n_quantized += module.in_features * module.out_features
    frozen = trainable = 0
    for param in model.parameters():  # unique parameters: tied weights count once
        if id(param) in quantized_weights:
            continue
        if param.requires_grad:
            trainable += param.numel()
        else:
            frozen += param.numel()
    return ParameterCounts(n_quantized, frozen, trainable)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    trainable: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.trainable + self.activations

    def parts(self) -> dict[str, float]:
        return {"weights": self.weights, "trainable+AdamW": self.trainable, "activations": self.activations}

    def describe(self) -> str:
        listed = ", ".join(f"{k} {_size(v)}" for k, v in self.parts().items())
        return f"memory estimate: {listed} -> total {_size(self.total)} (rough; see mmlearn/memory.py)"


def _size(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 1024**2:.1f} MiB"


def estimate(
    counts: ParameterCounts,
    *,
    dtype_bytes: int,
    double_quant: bool,
    layers: int,
    hidden: int,
    vocab: int,
    tokens: int,
    batch: int,
    activation_bytes: int,
    gradient_checkpointing: bool = False,
) -> MemoryEstimate:
    weights = counts.quantized * nf4_bytes_per_param(double_quant) + counts.frozen * dtype_bytes
    trainable = counts.trainable * (4 + 4 + 8)
    factor = CHECKPOINTED_FACTOR if gradient_checkpointing else ACTIVATION_FACTOR
    blocks = layers * hidden * tokens * batch * activation_bytes * factor
    logits = batch * tokens * vocab * (activation_bytes + 8)
    return MemoryEstimate(weights=weights, trainable=trainable, activations=blocks + logits)


def activation_bytes(precision: str) -> int:
    """Bytes per activation for a Lightning precision string ("32-true", "bf16-mixed", "16-mixed", ...)."""
    return 4 if str(precision).startswith("32") else 2


def estimate_model(
    model, *, dtype_bytes: int, tokens: int, batch: int, precision: str, gradient_checkpointing: bool
) -> MemoryEstimate:
    """The estimate for a loaded model (4-bit modules found as loaded) and a batch shape."""
    text = model.config.get_text_config()
    quantization = getattr(model.config, "quantization_config", None)
    if quantization is not None and not isinstance(quantization, dict):
        quantization = quantization.to_dict()
    double_quant = bool((quantization or {}).get("bnb_4bit_use_double_quant", False))
    return estimate(
        count_parameters(model, is_4bit),
        dtype_bytes=dtype_bytes,
        double_quant=double_quant,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        vocab=text.vocab_size,
        tokens=tokens,
        batch=batch,
        activation_bytes=activation_bytes(precision),
        gradient_checkpointing=gradient_checkpointing,
    )


def checkpoint_dtype_bytes(module) -> int:
    return torch.finfo(getattr(torch, module.spec.torch_dtype)).bits // 8


def estimate_run(module, datamodule, precision: str) -> MemoryEstimate:
    """The estimate for a built `VLMFineTuner` and a connected datamodule: worst batch = batch_size
    samples of the longest training sample."""
    return estimate_model(
        module.model,
        dtype_bytes=checkpoint_dtype_bytes(module),
        tokens=max(datamodule.lengths["train"]),
        batch=datamodule.batch_size,
        precision=precision,
        gradient_checkpointing=module.spec.gradient_checkpointing,
    )
