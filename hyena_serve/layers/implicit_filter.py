"""Implicit long filters: a small FFN with sine activations evaluated on a positional
embedding, then shaped by a decay. The filter is a function of its parameters only (never
of the input), which is what makes the frequency-domain cache and the export possible.

- :class:`HyenaPixelFilter` (2D, HyenaPixel): ``z`` (1, E, Kh, Kw) 2D sinusoidal encoding,
  1×1-conv FFN E→O→O→C, decay ``exp(-dist·|deltas|) + shift`` over the distance from the
  filter centre. Registered as ``token_mixer.long_conv`` in the published checkpoints.
- :class:`HyenaFilter` (1D, bidirectional Hyena): ``z`` (1, K, E) = [triangle, cos, -sin],
  Linear FFN E→O→O→O→C, modulation ``exp(-(1-t)·|deltas|)``. Registered as
  ``token_mixer.filter_fn``.

Each owns the per-channel skip ``bias`` (``D`` of the FFT convolution) under the name the
checkpoints use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from hyena_serve.contract import to_pair

_DECAY_TARGET = 1e-2
_FAST_DECAY_PCT, _SLOW_DECAY_PCT = 0.3, 1.5


def _decay_rates(channels: int) -> torch.Tensor:
    """``linspace(ln(0.01)/1.5, ln(0.01)/0.3, C)``: slowly to quickly decaying channels."""
    return torch.linspace(math.log(_DECAY_TARGET) / _SLOW_DECAY_PCT, math.log(_DECAY_TARGET) / _FAST_DECAY_PCT,
                          channels)


def sincos_pos_emb_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """2D sinusoidal encoding (dim, height, width) of raw integer positions, base 10000.

    Channels ``[0, dim/2)`` encode the column, ``[dim/2, dim)`` the row; within each half
    even channels hold ``sin(pos·f_i)`` and odd ones ``cos(pos·f_i)``,
    ``f_i = exp(-2i·ln(10000)/(dim/2))``.
    """
    if dim % 4 != 0:
        raise ValueError(f"the 2D sin/cos positional encoding needs dim divisible by 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(torch.arange(0.0, half, 2) * -(math.log(10000.0) / half))  # (half/2,)
    cols = torch.arange(0.0, width)[:, None] * freqs  # (W, half/2)
    rows = torch.arange(0.0, height)[:, None] * freqs  # (H, half/2)
    pe = torch.zeros(dim, height, width)
    pe[0:half:2] = torch.sin(cols).T[:, None, :].expand(-1, height, -1)
    pe[1:half:2] = torch.cos(cols).T[:, None, :].expand(-1, height, -1)
    pe[half::2] = torch.sin(rows).T[:, :, None].expand(-1, -1, width)
    pe[half + 1 :: 2] = torch.cos(rows).T[:, :, None].expand(-1, -1, width)
    return pe


def centre_distance(height: int, width: int) -> torch.Tensor:
    """Euclidean distance (height, width) of each pixel centre from the filter centre."""
    rows = torch.arange(height, dtype=torch.float32) + 0.5 - height / 2
    cols = torch.arange(width, dtype=torch.float32) + 0.5 - width / 2
    return torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)


class Sin(nn.Module):
    """``sin(freq · x)`` with a learnable frequency per channel.

    ``channel_dim=1`` for (B, C, H, W) inputs (freq (1, C, 1, 1)), ``-1`` for channels-last
    (freq (1, C)).
    """

    def __init__(self, dim: int, w: float = 1.0, channel_dim: int = -1):
        super().__init__()
        shape = (1, dim) if channel_dim == -1 else (1, dim, 1, 1)
        self.freq = nn.Parameter(w * torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class HyenaPixelFilter(nn.Module):
    """The implicit 2D filter of one HyenaPixel mixer: ``filter()`` → k (C, Kh, Kw)."""

    def __init__(self, dim: int, kernel_size: int | Sequence[int], emb_dim: int = 32, order: int | None = None):
        super().__init__()
        kh, kw = to_pair(kernel_size)
        order = order or 2 * emb_dim
        self.kernel_size = (kh, kw)
        self.z = nn.Parameter(sincos_pos_emb_2d(emb_dim, kh, kw)[None])
        # Fixed geometry, but a checkpoint entry: a persistent buffer, not a parameter.
        self.register_buffer("distance_map", centre_distance(kh, kw)[None, None])
        self.deltas = nn.Parameter(_decay_rates(dim)[None, :, None, None] / max(kh, kw))
        self.shift = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.randn(1, dim, 1, 1))
        self.implicit_filter = nn.Sequential(
            nn.Conv2d(emb_dim, order, 1),
            Sin(order, channel_dim=1),
            nn.Conv2d(order, order, 1),
            Sin(order, channel_dim=1),
            nn.Conv2d(order, dim, 1, bias=False),
        )

    def filter(self) -> torch.Tensor:
        k = self.implicit_filter(self.z)
        k = k * (torch.exp(-self.distance_map * self.deltas.abs()) + self.shift)
        return k[0]

    def skip(self) -> torch.Tensor:
        return self.bias.reshape(-1)


class PositionalEmbedding(nn.Module):
    """``z`` (1, K, E) = [t, cos(f·w), -sin(f·w)] and the buffer ``t`` = 1 - triangle.

    The triangle is 0 at both ends and 1 at the centre; ``w = 2πn/K``,
    ``f = linspace(1e-4, bands-1, bands)``, ``bands = (E-1)//2``.
    """

    def __init__(self, emb_dim: int, seq_len: int):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"the Hyena filter embedding needs an odd emb_dim >= 3, got {emb_dim}")
        if seq_len % 2 == 0:
            raise ValueError(f"the bidirectional Hyena filter needs an odd length, got {seq_len}")
        bands = (emb_dim - 1) // 2
        ramp = torch.linspace(0, 1, seq_len // 2 + 1)
        tri = torch.cat([ramp[:-1], ramp.flip(0)])[None, :, None]  # (1, K, 1)
        w = 2 * math.pi * torch.linspace(0, seq_len - 1, seq_len)[None, :, None] / seq_len
        fw = torch.linspace(1e-4, bands - 1, bands)[None, None] * w  # (1, K, bands)
        self.z = nn.Parameter(torch.cat([tri, torch.cos(fw), -torch.sin(fw)], dim=-1))
        self.register_buffer("t", 1 - tri)


class ExponentialModulation(nn.Module):
    """``k · exp(-t·|deltas|)``; ``deltas`` (1, 1, C) fixed (a buffer)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("deltas", _decay_rates(dim)[None, None])

    def forward(self, t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return k * torch.exp(-t * self.deltas.abs())


class HyenaFilter(nn.Module):
    """The implicit 1D filter of one bidirectional Hyena mixer: ``filter()`` → k (C, K)."""

    def __init__(self, dim: int, seq_len: int, emb_dim: int = 33, order: int = 64, num_inner_mlps: int = 2):
        super().__init__()
        self.kernel_size = (seq_len,)
        self.bias = nn.Parameter(torch.randn(dim))
        self.pos_emb = PositionalEmbedding(emb_dim, seq_len)
        layers: list[nn.Module] = [nn.Linear(emb_dim, order), Sin(order)]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(order, order), Sin(order)]
        layers.append(nn.Linear(order, dim, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = ExponentialModulation(dim)

    def filter(self) -> torch.Tensor:
        k = self.modulation(self.pos_emb.t, self.implicit_filter(self.pos_emb.z))
        return k[0].T

    def skip(self) -> torch.Tensor:
        return self.bias
