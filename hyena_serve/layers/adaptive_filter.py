"""Adaptive frequency filter token mixer (AFF).

Huang et al., "Adaptive Frequency Filters As Efficient Global Token Mixers" (ICCV 2023,
arXiv 2307.14008): the feature map goes to the frequency domain, a mask predicted from
the spectrum itself filters it by an elementwise (complex) multiply, and the inverse
transform brings it back. By the convolution theorem this is a global circular
convolution with an instance-adaptive kernel as large as the map:

    X = rfft2(x)                          (orthonormal, per channel)
    M = S_λ(W2 ⋆ ReLU(W1 ⋆ X + b1) + b2)  (complex 1×1 layers, block diagonal over G
                                           channel groups; ReLU on the real and the
                                           imaginary parts; S_λ soft shrinkage, λ = 0.01)
    y = irfft2(M · X) + x

following the paper's released implementation of the mask network (two complex-valued
per-group linear layers over the channels, shared by all frequencies, weights and biases
initialised N(0, 0.02²), G = 8 groups, hidden width = group width).

The transforms are ``torch.ops.hyena.rfft2`` / ``irfft2`` (planar spectrum, channels
[re | im]; docs/design.md §4), so the mixer exports as two custom nodes with fast
standard-op bodies plus standard ONNX ops. Each complex layer is one grouped 1×1
``Conv`` on the spectrum regrouped as (group, re/im, channel): per group the real
weight block is [[Wr, -Wi], [Wi, Wr]], built from the complex parameters at every call
(export constant-folds it).

Departures from the paper, each to fit the MetaFormer mixer contract:
- input and output are (B, H, W, C), as every mixer here; AFFNet's block works on
  (B, C, H, W) and runs the mixer after an inverted-residual MLP inside one residual
  branch, whereas here the MetaFormer block supplies the norm, residual and MLP;
- the mixer keeps the paper's inner skip (``+ x``), so a zero mask gives the identity;
  with the block's residual the input reaches the output along two paths, as in AFFNet;
- soft shrinkage is written ``m - clamp(m, -λ, λ)`` (the same function), which exports
  to standard ONNX ops; the transforms compute in float32 (float64 for float64 input) and
  return the input dtype, per the op contract, while the paper casts the whole filter
  to float32;
- ``feature_size`` is accepted for the contract and not needed: the filter works at any
  map size (the spectrum's size follows the input).

:func:`adaptive_filter_reference` is the paper's formulation with ``torch.fft`` and
complex einsums per group, which the mixer is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyena_serve.ops.spectral import irfft2, rfft2


class AdaptiveFrequencyFilter(nn.Module):
    """AFF token mixer: (B, H, W, C) → (B, H, W, C); ``dim`` must split into
    ``num_groups`` groups."""

    def __init__(self, dim: int, feature_size: tuple[int, int] | None = None, num_groups: int = 8,
                 hidden_ratio: int = 1, sparsity_threshold: float = 0.01, init_scale: float = 0.02, **kwargs):
        super().__init__()
        if num_groups < 1 or dim % num_groups:
            raise ValueError(f"dim {dim} does not split into {num_groups} channel groups")
        if hidden_ratio < 1:
            raise ValueError(f"hidden_ratio must be >= 1, got {hidden_ratio}")
        if sparsity_threshold < 0:
            raise ValueError(f"sparsity_threshold must be >= 0, got {sparsity_threshold}")
        self.dim = dim
        self.feature_size = feature_size
        self.num_groups = num_groups
        self.group_width = dim // num_groups
        self.hidden_width = self.group_width * hidden_ratio
        self.sparsity_threshold = sparsity_threshold
        g, b, hid = num_groups, self.group_width, self.hidden_width
        # complex weights as (real, imaginary) on the leading axis, (group, in, out)
        self.w1 = nn.Parameter(init_scale * torch.randn(2, g, b, hid))
        self.b1 = nn.Parameter(init_scale * torch.randn(2, g, hid))
        self.w2 = nn.Parameter(init_scale * torch.randn(2, g, hid, b))
        self.b2 = nn.Parameter(init_scale * torch.randn(2, g, b))

    @staticmethod
    def _conv_weight(w: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Complex per-group weights (2, G, in, out) and bias (2, G, out) → the grouped 1×1
        Conv weight (G·2·out, 2·in, 1, 1) and bias (G·2·out,) acting on channels ordered
        (group, re/im, channel): out_re = Wrᵀ re - Wiᵀ im, out_im = Wiᵀ re + Wrᵀ im."""
        wr, wi = w[0].transpose(1, 2), w[1].transpose(1, 2)                 # (G, out, in)
        block = torch.cat([torch.cat([wr, -wi], dim=2), torch.cat([wi, wr], dim=2)], dim=1)  # (G, 2out, 2in)
        g, out2, in2 = block.shape
        return block.reshape(g * out2, in2, 1, 1), bias.transpose(0, 1).reshape(-1)

    def mask(self, spec: torch.Tensor) -> torch.Tensor:
        """The filter predicted from the planar spectrum (B, 2C, H, M), planar too."""
        bsz, c2, h, m = spec.shape
        g, b = self.num_groups, self.group_width
        grouped = spec.reshape(bsz, 2, g, b, h, m).transpose(1, 2).reshape(bsz, c2, h, m)
        w1, b1 = self._conv_weight(self.w1, self.b1)
        w2, b2 = self._conv_weight(self.w2, self.b2)
        hidden = F.relu(F.conv2d(grouped, w1.to(spec.dtype), b1.to(spec.dtype), groups=g))
        out = F.conv2d(hidden, w2.to(spec.dtype), b2.to(spec.dtype), groups=g)
        lam = self.sparsity_threshold
        out = out - out.clamp(-lam, lam)  # soft shrinkage
        return out.reshape(bsz, g, 2, b, h, m).transpose(1, 2).reshape(bsz, c2, h, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.permute(0, 3, 1, 2)                                           # (B, C, H, W)
        spec = rfft2(u)                                                     # (B, 2C, H, M)
        mr, mi = self.mask(spec).chunk(2, dim=1)
        sr, si = spec.chunk(2, dim=1)
        filtered = torch.cat([mr * sr - mi * si, mr * si + mi * sr], dim=1)
        y = irfft2(filtered, u.shape[-1]) + u
        return y.permute(0, 2, 3, 1)


def adaptive_filter_reference(mixer: AdaptiveFrequencyFilter, x: torch.Tensor) -> torch.Tensor:
    """The mixer's output by the paper's formulation: ``torch.fft`` and complex einsums per
    channel group (for tests; runs in the dtype of ``x``)."""
    bsz, h, w, c = x.shape
    g, b = mixer.num_groups, mixer.group_width
    u = x.permute(0, 3, 1, 2)
    spec = torch.fft.rfft2(u, norm="ortho")
    z = spec.reshape(bsz, g, b, h, -1)
    w1 = torch.complex(mixer.w1[0], mixer.w1[1]).to(z.dtype)
    b1 = torch.complex(mixer.b1[0], mixer.b1[1]).to(z.dtype)
    w2 = torch.complex(mixer.w2[0], mixer.w2[1]).to(z.dtype)
    b2 = torch.complex(mixer.b2[0], mixer.b2[1]).to(z.dtype)
    o1 = torch.einsum("bgihw,gio->bgohw", z, w1) + b1[None, :, :, None, None]
    o1 = torch.complex(F.relu(o1.real), F.relu(o1.imag))
    o2 = torch.einsum("bgihw,gio->bgohw", o1, w2) + b2[None, :, :, None, None]
    lam = mixer.sparsity_threshold
    mask = torch.complex(F.softshrink(o2.real, lam), F.softshrink(o2.imag, lam))
    y = torch.fft.irfft2(mask.reshape(bsz, c, h, -1) * spec, s=(h, w), norm="ortho") + u
    return y.permute(0, 2, 3, 1)
