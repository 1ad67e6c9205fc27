"""``torch.ops.hyena.fft_conv``: the FFT long convolution as one custom op.

One op for both modes so the exported graph has exactly one node per mixer, whatever the
variant. It takes the filter already in the frequency domain (``Kf``), which is what makes
the eval-time cache and the export possible: the implicit-filter network stays outside.

- ``x`` (B, C, H, W), any float dtype; the FFT runs in float32 (float64 for float64 input).
- ``kf`` (C, *spectrum, 2): real view of ``rfftn(k, fft_size)`` (see ``spectrum.py``).
- ``d`` (C,): the per-channel skip.
- ``mode``: ``"2d"`` (centred 2D convolution over H, W), ``"1d_bidir"`` (the map
  flattened in raster order to L = H·W, centred 1D convolution) or ``"2d_circular"``
  (circular 2D convolution over H, W: transform size = map size, no padding, no crop;
  ``kernel_size == fft_size == (H, W)``).

Autograd is written out in closed form (derivation in the comments of ``_backward``) so
that the op has no hidden state and ``torch.compile`` can trace the backward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from hyena_serve.contract import (
    MODE_2D_CIRCULAR,
    MODES,
    MODES_2D,
    TORCH_OP_NAME,
    TORCH_OP_NAMESPACE,
    FFTPlan,
)
from hyena_serve.ops.spectrum import working_dtype

_QUALNAME = f"{TORCH_OP_NAMESPACE}::{TORCH_OP_NAME}"


def _signal(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The tensor the FFT runs over: (B, C, H, W) in the 2d modes, (B, C, H·W) in 1d mode."""
    return x if mode in MODES_2D else x.flatten(-2)


def _check(x: torch.Tensor, kf: torch.Tensor, d: torch.Tensor, mode: str,
           kernel_size: Sequence[int], fft_size: Sequence[int]) -> FFTPlan:
    """Validate arguments; return the plan they describe. Raises ValueError."""
    if mode not in MODES:
        raise ValueError(f"fft_conv: unknown mode {mode!r}; expected one of {MODES}")
    if x.dim() != 4:
        raise ValueError(f"fft_conv: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    ndim = 2 if mode in MODES_2D else 1
    if len(kernel_size) != ndim or len(fft_size) != ndim:
        raise ValueError(f"fft_conv: mode {mode!r} needs {ndim} kernel/fft sizes, got {kernel_size}, {fft_size}")
    channels = x.shape[1]
    spatial = (x.shape[2], x.shape[3]) if ndim == 2 else (x.shape[2] * x.shape[3],)
    plan = FFTPlan(mode, tuple(spatial), tuple(kernel_size), tuple(fft_size))
    if mode == MODE_2D_CIRCULAR and not (tuple(kernel_size) == tuple(fft_size) == tuple(spatial)):
        # Circular: the filter spans the map and the transform is the map itself.
        raise ValueError(f"fft_conv: mode {mode!r} needs kernel_size == fft_size == spatial size "
                         f"{list(spatial)}, got kernel_size={list(kernel_size)}, fft_size={list(fft_size)}")
    if tuple(kf.shape) != (channels, *plan.spectrum_shape, 2):
        raise ValueError(f"fft_conv: kf has shape {tuple(kf.shape)}, expected "
                         f"{(channels, *plan.spectrum_shape, 2)} for C={channels}, fft_size={tuple(fft_size)}")
    if tuple(d.shape) != (channels,):
        raise ValueError(f"fft_conv: d must have shape ({channels},), got {tuple(d.shape)}")
    for n, k, nfft in zip(spatial, kernel_size, fft_size):
        if not plan.circular and (nfft < n + k // 2 or nfft < k):
            raise ValueError(f"fft_conv: fft size {nfft} aliases for signal {n} and filter {k} "
                             f"(needs >= max({n + k // 2}, {k}))")
    return plan


def _crop(full: torch.Tensor, plan: FFTPlan) -> torch.Tensor:
    for axis, (n, s) in enumerate(zip(plan.spatial, plan.crop_start), start=full.dim() - len(plan.spatial)):
        full = full.narrow(axis, s, n)
    return full


def _uncrop(g: torch.Tensor, plan: FFTPlan) -> torch.Tensor:
    """Adjoint of ``_crop``: place ``g`` at the crop offset inside a zero buffer."""
    pad: list[int] = []
    for n, s, nfft in reversed(list(zip(plan.spatial, plan.crop_start, plan.fft))):
        pad += [s, nfft - n - s]
    return F.pad(g, pad)


def _dims(mode: str) -> tuple[int, ...]:
    return (-2, -1) if mode in MODES_2D else (-1,)


@torch.library.custom_op(_QUALNAME, mutates_args=())
def fft_conv(x: torch.Tensor, kf: torch.Tensor, d: torch.Tensor, mode: str,
             kernel_size: list[int], fft_size: list[int]) -> torch.Tensor:
    """y = crop(irfftn(rfftn(x, fft_size) · Kf)) + d·x, in the working dtype, cast back."""
    plan = _check(x, kf, d, mode, kernel_size, fft_size)
    work = working_dtype(x.dtype)
    dims = _dims(mode)
    u = _signal(x, mode).to(work)
    kfc = torch.view_as_complex(kf.to(work).contiguous())
    if mode in MODES_2D:
        y = _fft_conv2d_cropped(u, kfc, plan)
    else:
        full = torch.fft.irfftn(torch.fft.rfftn(u, s=fft_size, dim=dims) * kfc, s=fft_size, dim=dims)
        y = _crop(full, plan)
    y = y + u * d.to(work).reshape(-1, *([1] * len(dims)))
    return y.reshape(x.shape).to(x.dtype)


def _fft_conv2d_cropped(u, kfc, plan: FFTPlan):
    """``crop(irfft2(rfft2(u) · Kf))`` with the transforms split per axis so that no work
    is spent on rows that are known to be zero (the padding, before the H transform) or
    that the crop throws away (after the inverse H transform): 10–30% faster than
    ``rfftn``/``irfftn`` over the padded plane at the S18 stage shapes. In circular mode
    there is neither padding nor crop (both narrows keep everything)."""
    (h, w), (sh, sw), (nh, nw) = plan.spatial, plan.crop_start, plan.fft
    spec = torch.fft.fft(torch.fft.rfft(u, n=nw, dim=-1), n=nh, dim=-2) * kfc
    rows = torch.fft.ifft(spec, dim=-2).narrow(-2, sh, h)
    return torch.fft.irfft(rows, n=nw, dim=-1).narrow(-1, sw, w)


@fft_conv.register_fake
def _(x, kf, d, mode, kernel_size, fft_size):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, kf, d, mode, kernel_size, fft_size = inputs
    ctx.save_for_backward(x, kf, d)
    ctx.mode, ctx.kernel_size, ctx.fft_size = mode, list(kernel_size), list(fft_size)


def _hermitian_weights(n_last: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """How often each half-spectrum bin counts in the full spectrum: 1 for DC (and Nyquist
    when the length is even), 2 for every other bin."""
    w = torch.full((length,), 2.0, dtype=dtype, device=device)
    w[0] = 1.0
    if n_last % 2 == 0:
        w[-1] = 1.0
    return w


def _backward(ctx, grad_y):
    # Write the forward as y_full = irfftn(Z), Z = X·Kf, X = rfftn(x). For any complex Z,
    # irfftn(Z)[m] = (1/N) Σ_half w_j Re(Z_j e^{+iθ_jm}) with w the Hermitian weights, so for
    # a real loss the gradient w.r.t. (Re Z, Im Z) is G_Z = w/N · rfftn(g_full). Then
    # grad Kf = conj(X)·G_Z (summed over the batch) and grad x = irfftn(conj(Kf)·rfftn(g_full)),
    # a correlation with the filter; g_full is grad_y put back at the crop offset. In
    # circular mode the crop offset is 0 and N = n: g_full = grad_y and the correlation is
    # circular too (the narrow to the first n samples below keeps everything).
    x, kf, d = ctx.saved_tensors
    mode, kernel_size, fft_size = ctx.mode, ctx.kernel_size, ctx.fft_size
    work = working_dtype(x.dtype)
    dims = _dims(mode)
    u = _signal(x, mode).to(work)
    g = _signal(grad_y, mode).to(work)
    spatial = tuple(u.shape[-len(dims):])
    plan = FFTPlan(mode, spatial, tuple(kernel_size), tuple(fft_size))
    kfc = torch.view_as_complex(kf.to(work).contiguous())
    d_b = d.to(work).reshape(-1, *([1] * len(dims)))
    g_spec = torch.fft.rfftn(_uncrop(g, plan), s=fft_size, dim=dims)

    grad_x = grad_kf = grad_d = None
    if ctx.needs_input_grad[0]:
        corr = torch.fft.irfftn(g_spec * kfc.conj(), s=fft_size, dim=dims)
        for axis, n in zip(range(corr.dim() - len(dims), corr.dim()), spatial):
            corr = corr.narrow(axis, 0, n)
        grad_x = (corr + g * d_b).reshape(x.shape).to(x.dtype)
    if ctx.needs_input_grad[1]:
        x_spec = torch.fft.rfftn(u, s=fft_size, dim=dims)
        w = _hermitian_weights(fft_size[-1], g_spec.shape[-1], work, g_spec.device)
        g_kf = (x_spec.conj() * g_spec).sum(0) * (w / math.prod(fft_size))
        grad_kf = torch.view_as_real(g_kf).to(kf.dtype)
    if ctx.needs_input_grad[2]:
        grad_d = (g * u).sum(dim=(0, *dims)).to(d.dtype)
    return grad_x, grad_kf, grad_d, None, None, None


fft_conv.register_autograd(_backward, setup_context=_setup_context)
