"""HyenaPixel (Hpx) token mixer: Hyena with a 2D implicit filter and a 2D FFT convolution.

Spravil et al., "HyenaPixel: Global Image Context with Convolutions" (arXiv 2402.19305).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyena_serve.contract import MODE_2D, to_pair
from hyena_serve.layers.fft_long_conv import FFTLongConvMixer
from hyena_serve.layers.implicit_filter import HyenaPixelFilter
from hyena_serve.layers.norms import LayerNormWithoutBias


def global_kernel_2d(feature_size: int | Sequence[int]) -> tuple[int, int]:
    """``2n-1`` per dim: the smallest filter that covers every pixel pair of the map."""
    h, w = to_pair(feature_size)
    return 2 * h - 1, 2 * w - 1


class HyenaPixelMixer(FFTLongConvMixer):
    """1×1 conv C→3C, depthwise k×k on 3C, ``v · longconv(norm(q·k))``, output projection.

    Input and output (B, H, W, C). The long filter has size ``long_kernel_size`` (default
    ``2n-1`` for the ``feature_size`` the mixer is built for); it runs on any H×W (the
    filter stops being global when the map grows beyond ``(K+1)/2``).
    ``use_layernorm`` adds the bias-free ``qk_norm`` / ``out_norm`` and makes the output
    projection a Linear (a 1×1 conv otherwise), as in the reference checkpoints.
    """

    fft_mode = MODE_2D

    def __init__(self, dim: int, feature_size: int | Sequence[int] = 56,
                 long_kernel_size: int | Sequence[int] | None = None, filter_emb_dim: int = 32,
                 filter_order: int | None = None, kernel_size: int = 5, use_layernorm: bool = False, **kwargs):
        super().__init__()
        self.dim = dim
        self.use_layernorm = use_layernorm
        self.pointwise_conv = nn.Conv2d(dim, 3 * dim, 1)
        self.depthwise_conv = nn.Conv2d(3 * dim, 3 * dim, kernel_size, padding=kernel_size // 2, groups=3 * dim)
        self.long_conv = HyenaPixelFilter(dim, long_kernel_size or global_kernel_2d(feature_size),
                                          emb_dim=filter_emb_dim, order=filter_order)
        if use_layernorm:
            self.qk_norm = LayerNormWithoutBias(dim)
            self.out_norm = LayerNormWithoutBias(dim)
            self.out_proj = nn.Linear(dim, dim)
        else:
            self.out_proj = nn.Conv2d(dim, dim, 1)

    @property
    def filter_module(self) -> HyenaPixelFilter:
        return self.long_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_conv(self.pointwise_conv(x.permute(0, 3, 1, 2)))
        q, k, v = x.split(self.dim, dim=1)
        qk = q * k
        if self.use_layernorm:
            qk = self.qk_norm(qk.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = v * self.fft_long_conv(qk.contiguous())
        if self.use_layernorm:
            return self.out_proj(self.out_norm(y.permute(0, 2, 3, 1)))
        return self.out_proj(y).permute(0, 2, 3, 1)
