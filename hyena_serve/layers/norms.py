"""Layer norms of the MetaFormer family (channels-last)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNormWithoutBias(nn.Module):
    """LayerNorm over the last dim with a learnable scale and no bias.

    Used for every block norm and the stem/downsampling norms (eps 1e-6) and for the Hyena
    mixers' ``qk_norm`` / ``out_norm`` (the reference keeps torch's default eps 1e-5 there).
    """

    def __init__(self, dim: int, eps: float = 1e-5, **kwargs):
        super().__init__()
        self.normalized_shape = (dim,)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, None, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape[0]}, eps={self.eps}"


class Scale(nn.Module):
    """Per-channel learnable scale (res-scale / layer-scale)."""

    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
