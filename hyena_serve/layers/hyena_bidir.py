"""Bidirectional Hyena (Hb) token mixer: Hyena over the raster-flattened feature map with a
centred (non-causal) 1D implicit filter.

Spravil et al., "HyenaPixel: Global Image Context with Convolutions" (arXiv 2402.19305);
Poli et al., "Hyena Hierarchy" (arXiv 2302.10866).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyena_serve.contract import MODE_1D_BIDIR, to_pair
from hyena_serve.layers.fft_long_conv import FFTLongConvMixer
from hyena_serve.layers.implicit_filter import HyenaFilter
from hyena_serve.layers.norms import LayerNormWithoutBias


def global_kernel_1d(feature_size: int | Sequence[int]) -> int:
    """``2L-1`` with ``L = H·W``."""
    h, w = to_pair(feature_size)
    return 2 * h * w - 1


class HyenaBidirMixer(FFTLongConvMixer):
    """Linear C→3C, depthwise Conv1d k=3, ``x0 · longconv(norm(v · x1))``, Linear C→C.

    Input and output (B, H, W, C); the sequence is the raster order of (H, W), the same
    order ``hyena::fft_conv`` flattens in ``1d_bidir`` mode. The filter length is
    ``2·L0-1`` for the ``feature_size`` the mixer is built for. The op computes the exact
    centred convolution at every L; the filter covers all position pairs only for
    L <= L0 and the reference implementation (FFT size 2L) matches it for L >= L0.
    """

    fft_mode = MODE_1D_BIDIR

    def __init__(self, dim: int, feature_size: int | Sequence[int] = 56, long_kernel_size: int | None = None,
                 filter_emb_dim: int = 33, filter_order: int = 64, short_kernel_size: int = 3,
                 use_layernorm: bool = False, **kwargs):
        super().__init__()
        self.dim = dim
        self.use_layernorm = use_layernorm
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.short_filter = nn.Conv1d(3 * dim, 3 * dim, short_kernel_size, padding=short_kernel_size // 2,
                                      groups=3 * dim)
        self.filter_fn = HyenaFilter(dim, long_kernel_size or global_kernel_1d(feature_size),
                                     emb_dim=filter_emb_dim, order=filter_order)
        if use_layernorm:
            self.qk_norm = nn.ModuleList([LayerNormWithoutBias(dim)])
            self.out_norm = LayerNormWithoutBias(dim)
        self.out_proj = nn.Linear(dim, dim)

    @property
    def filter_module(self) -> HyenaFilter:
        return self.filter_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        u = self.short_filter(self.in_proj(x.reshape(b, h * w, c)).transpose(1, 2))
        x0, x1, v = u.split(self.dim, dim=1)
        v = v * x1
        if self.use_layernorm:
            v = self.qk_norm[0](v.transpose(1, 2)).transpose(1, 2)
        v = self.fft_long_conv(v.reshape(b, c, h, w)).reshape(b, c, h * w)
        y = (v * x0).transpose(1, 2)
        if self.use_layernorm:
            y = self.out_norm(y)
        return self.out_proj(y).reshape(b, h, w, c)
