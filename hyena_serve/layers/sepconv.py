"""Inverted separable convolution token mixer (ConvFormer; MobileNetV2)."""

from __future__ import annotations

import torch
from torch import nn

from hyena_serve.layers.mlp import StarReLU


class SepConv(nn.Module):
    """Linear C→eC, StarReLU, depthwise k×k conv, Linear eC→C. Input and output (B, H, W, C)."""

    def __init__(self, dim: int, expansion_ratio: float = 2, act_layer=StarReLU, bias: bool = False,
                 kernel_size: int = 7, **kwargs):
        super().__init__()
        mid = int(expansion_ratio * dim)
        self.pwconv1 = nn.Linear(dim, mid, bias=bias)
        self.act1 = act_layer()
        self.dwconv = nn.Conv2d(mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, bias=bias)
        self.pwconv2 = nn.Linear(mid, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pwconv1(x))
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pwconv2(x)
