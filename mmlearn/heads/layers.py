"""The classification head itself: dropout, an optional MLP, and the output layer over the labels."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}
HEAD = "score_head"  # the head's module name inside the model (PEFT modules_to_save)


class ClassificationHead(nn.Module):
    """`mlp`: hidden widths (empty: one linear layer); each hidden layer is Linear → activation →
    dropout. Dropout also applies to the pooled input."""

    def __init__(self, width: int, num_labels: int, *, dropout: float, mlp: Sequence[int], activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"head.module.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"head.module.dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        for hidden in mlp:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_labels))
        self.layers = nn.Sequential(*layers)

    def forward(self, pooled):
        return self.layers(pooled)
