"""Plain, stateless FFT long convolutions: the ground truth every fast path is tested against.

The linear ones follow docs/design.md §2 literally: pad, rfft, multiply, irfft, crop, add the
skip; the circular one (docs/design.md §4, mode ``2d_circular``) is the same without padding or
crop. They are differentiable through torch's own FFT autograd, so they also serve as the
training fallback. The ``direct_*`` functions compute the same operators without any FFT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, MODE_2D_CIRCULAR, plan_fft


def _skip(u: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor | float:
    if d is None:
        return 0.0
    return u * d.reshape(-1, *([1] * (u.dim() - 2))).to(u.dtype)


def fft_conv2d_ref(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
    """Centred 2D convolution of ``u`` (B, C, H, W) with per-channel filters ``k`` (C, Kh, Kw).

    ``y[b,c,i,j] = sum_{p,q} k[c, i-p+Kh//2, j-q+Kw//2] u[b,c,p,q] + d[c] u[b,c,i,j]``.
    The FFT runs in float32 (float64 stays float64) and the result is cast back.
    """
    _, _, h, w = u.shape
    plan = plan_fft(MODE_2D, h, w, tuple(k.shape[-2:]))
    work = torch.promote_types(u.dtype, torch.float32)
    nh, nw = plan.fft
    spec = torch.fft.rfft2(u.to(work), s=(nh, nw)) * torch.fft.rfft2(k.to(work), s=(nh, nw))
    full = torch.fft.irfft2(spec, s=(nh, nw))
    ch, cw = plan.crop_start
    y = full[..., ch : ch + h, cw : cw + w]
    return (y + _skip(u.to(work), d)).to(u.dtype)


def fft_conv1d_bidir_ref(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
    """Centred ("bidirectional") 1D convolution of ``u`` (B, C, L) with filters ``k`` (C, K).

    ``y[b,c,l] = sum_m k[c, l-m+K//2] u[b,c,m] + d[c] u[b,c,l]``; FFT size ``max(2L, K)``.
    """
    length = u.shape[-1]
    plan = plan_fft(MODE_1D_BIDIR, 1, length, k.shape[-1])
    work = torch.promote_types(u.dtype, torch.float32)
    (n,) = plan.fft
    full = torch.fft.irfft(torch.fft.rfft(u.to(work), n=n) * torch.fft.rfft(k.to(work), n=n), n=n)
    (c,) = plan.crop_start
    y = full[..., c : c + length]
    return (y + _skip(u.to(work), d)).to(u.dtype)


def fft_conv2d_circular_ref(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
    """Circular 2D convolution of ``u`` (B, C, H, W) with per-channel filters ``k`` (C, H, W).

    ``y[b,c,i,j] = sum_{p,q} k[c, (i-p) mod H, (j-q) mod W] u[b,c,p,q] + d[c] u[b,c,i,j]``:
    transform size = map size, no padding, no crop. The FFT runs in float32 (float64
    stays float64) and the result is cast back.
    """
    _, _, h, w = u.shape
    plan = plan_fft(MODE_2D_CIRCULAR, h, w, tuple(k.shape[-2:]))
    work = torch.promote_types(u.dtype, torch.float32)
    spec = torch.fft.rfft2(u.to(work)) * torch.fft.rfft2(k.to(work))
    y = torch.fft.irfft2(spec, s=plan.fft)
    return (y + _skip(u.to(work), d)).to(u.dtype)


def direct_conv2d(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
    """The same operator as :func:`fft_conv2d_ref` by direct depthwise convolution.

    ``conv2d`` computes a cross-correlation, so the kernel is flipped; the padding puts the
    filter centre (index K//2) on the output pixel. Used by tests and benchmarks only: it
    costs O(H·W·Kh·Kw) per channel.
    """
    c = u.shape[1]
    kh, kw = k.shape[-2:]
    weight = torch.flip(k, dims=(-2, -1)).reshape(c, 1, kh, kw).to(u.dtype)
    # Flipped kernel index j' = K-1-j; centre K//2 maps to K-1-K//2 -> pad that much on the left.
    pad_l, pad_t = kw - 1 - kw // 2, kh - 1 - kh // 2
    padded = F.pad(u, (pad_l, kw - 1 - pad_l, pad_t, kh - 1 - pad_t))
    return F.conv2d(padded, weight, groups=c) + _skip(u, d)


def direct_conv1d_bidir(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
    """The same operator as :func:`fft_conv1d_bidir_ref` by direct convolution (tests only)."""
    c = u.shape[1]
    kk = k.shape[-1]
    weight = torch.flip(k, dims=(-1,)).reshape(c, 1, kk).to(u.dtype)
    pad_l = kk - 1 - kk // 2
    return F.conv1d(F.pad(u, (pad_l, kk - 1 - pad_l)), weight, groups=c) + _skip(u, d)


def direct_circular_conv2d(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
    """The same operator as :func:`fft_conv2d_circular_ref` as an explicit sum over shifts:
    ``y = sum_{p,q} k[:, p, q] · roll(u, (p, q))`` (``roll(u, (p, q))[i, j] = u[(i-p) mod H,
    (j-q) mod W]``). Tests only: O(H²·W²) per channel."""
    h, w = u.shape[-2:]
    if tuple(k.shape[-2:]) != (h, w):
        raise ValueError(f"a circular filter spans the map: expected (C, {h}, {w}), got {tuple(k.shape)}")
    k = k.to(u.dtype)
    y = torch.zeros_like(u)
    for p in range(h):
        for q in range(w):
            y = y + k[:, p, q, None, None] * torch.roll(u, shifts=(p, q), dims=(-2, -1))
    return y + _skip(u, d)
