"""Classification heads on top of a backbone's pooled features."""

from __future__ import annotations

import torch
from torch import nn

from transferlab.core.errors import ConfigError


class LinearHead(nn.Module):
    """Dropout (optional) then a linear layer: features ``(B, in_features)`` -> logits."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"the head needs num_classes >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"head dropout must be in [0, 1), got {dropout}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))
