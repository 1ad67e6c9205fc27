"""Activations, the block MLP and the classifier head of the MetaFormer family."""

from __future__ import annotations

import torch
from torch import nn


class StarReLU(nn.Module):
    """``s · relu(x)² + b`` with learnable scalars ``s`` (init 1) and ``b`` (init 0)."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(scale_value * torch.ones(1))
        self.bias = nn.Parameter(bias_value * torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.relu(x) ** 2 + self.bias


class SquaredReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(torch.relu(x))


class Mlp(nn.Module):
    """Linear C→rC, activation, Linear rC→C; no biases by default."""

    def __init__(self, dim: int, mlp_ratio: float = 4, act_layer=StarReLU, drop: float = 0.0,
                 bias: bool = False, **kwargs):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class MlpHead(nn.Module):
    """Classifier: Linear C→rC, SquaredReLU, LayerNorm, dropout, Linear rC→classes."""

    def __init__(self, dim: int, num_classes: int = 1000, mlp_ratio: float = 4, act_layer=SquaredReLU,
                 norm_layer=nn.LayerNorm, head_dropout: float = 0.0, bias: bool = True):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = act_layer()
        self.norm = norm_layer(hidden)
        self.head_dropout = nn.Dropout(head_dropout)
        self.fc2 = nn.Linear(hidden, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.head_dropout(self.norm(self.act(self.fc1(x)))))
