"""Global filter token mixer (GFNet): a learned complex filter per channel over the 2D
spectrum of the feature map, run as one circular ``hyena::fft_conv``.

Rao et al., "Global Filter Networks for Image Classification" (NeurIPS 2021,
arXiv 2107.00645): ``X ← irfft2(K ⊙ rfft2(X))`` over the (H, W) feature map, with a
learnable complex weight ``K`` per channel and frequency of the half spectrum
(H, W//2+1), initialised ~N(0, 0.02²) (real and imaginary parts), as in the paper.

GFNet scales both transforms by 1/√(H·W) (``norm="ortho"``); the op's transforms are the
unscaled forward and the 1/(H·W) inverse (docs/design.md §4). Both pairs multiply the
result by 1/(H·W), so one weight gives the same output under either: ``K`` is the op's
``Kf`` as it is. The parameter therefore *is* the spectrum the op consumes, in the op's
layout; the eval-time "cache" is the parameter itself and freezing (for export) copies it.
The skip ``D`` is zero: GFNet has none.

Departures from the paper:
- the weight is stored (C, H, W//2+1, 2), the layout of the op's ``Kf``, instead of
  GFNet's (H, W//2+1, C, 2) (a GFNet checkpoint converts with ``permute(2, 0, 1, 3)``);
- as every MetaFormer mixer, it sits in its own residual branch,
  ``x + mixer(norm(x))``, followed by the MLP branch; GFNet's block puts the filter and
  the MLP in one branch, ``x + mlp(norm2(filter(norm1(x))))``;
- the filter is built for one feature size (the stage's size at the model's
  ``img_size``). On another size the filter keeps its spatial taps: its circular
  impulse response, indexed by signed offset (``-(n//2) .. n-1-n//2`` along each axis),
  is zero-padded to a larger map (it then no longer wraps around it) or cut to the
  offsets a smaller map holds, and transformed again (:func:`resample_circular_spectrum`).
  At the built size ``K`` is used exactly as learned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyena_serve.contract import MODE_2D_CIRCULAR, FFTPlan, plan_fft, to_pair
from hyena_serve.layers.fft_long_conv import FFTLongConvMixer
from hyena_serve.ops.spectrum import working_dtype


def _offset_map(n_from: int, n_to: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every index of a length-``n_to`` circular axis: the index of the same signed
    offset on a length-``n_from`` axis, and whether that offset exists there."""
    t = torch.arange(n_to)
    offset = torch.where(t <= n_to - 1 - n_to // 2, t, t - n_to)
    keep = (offset >= -(n_from // 2)) & (offset <= n_from - 1 - n_from // 2)
    return torch.remainder(offset, n_from), keep


def resample_circular_spectrum(kf: torch.Tensor, size_from: Sequence[int], size_to: Sequence[int]) -> torch.Tensor:
    """``Kf`` (C, H0, W0//2+1, 2) of a circular filter on an ``size_from`` map → the ``Kf``
    (C, H, W//2+1, 2) of the filter with the same spatial taps on a ``size_to`` map.

    The taps are ``irfft2(Kf)`` by signed offset; offsets both maps hold are copied, the
    others are zero (a larger map) or dropped (a smaller one). Differentiable.
    """
    (h0, w0), (h, w) = to_pair(tuple(size_from)), to_pair(tuple(size_to))
    if tuple(kf.shape[1:]) != (h0, w0 // 2 + 1, 2):
        raise ValueError(f"Kf of shape {tuple(kf.shape)} is not the half spectrum of a {h0}x{w0} map")
    work = working_dtype(kf.dtype)
    taps = torch.fft.irfft2(torch.view_as_complex(kf.to(work).contiguous()), s=(h0, w0))
    for axis, n_from, n_to in ((-2, h0, h), (-1, w0, w)):
        index, keep = _offset_map(n_from, n_to)
        shape = [1] * taps.dim()
        shape[axis] = n_to
        taps = taps.index_select(axis, index.to(taps.device)) * keep.to(taps).reshape(shape)
    return torch.view_as_real(torch.fft.rfft2(taps))


class GlobalFilterSpectrum(nn.Module):
    """The learned half spectrum ``weight`` (C, H, W//2+1, 2) of a circular filter on an
    (H, W) map: the real view of the op's ``Kf`` (real and imaginary parts interleaved).

    Provides the filter-module interface of :class:`FFTLongConvMixer` (``kernel_size``,
    ``filter()``, ``skip()``) and :meth:`spectrum_for`, the ``Kf`` for any map size.
    """

    def __init__(self, dim: int, size: int | Sequence[int], init_std: float = 0.02):
        super().__init__()
        self.kernel_size = to_pair(size)
        h, w = self.kernel_size
        self.weight = nn.Parameter(torch.empty(dim, h, w // 2 + 1, 2))
        nn.init.normal_(self.weight, std=init_std)

    def spectrum_for(self, size: Sequence[int]) -> torch.Tensor:
        """``Kf`` for a map of ``size``: the parameter itself at the built size, else resampled."""
        if tuple(size) == self.kernel_size:
            return self.weight
        return resample_circular_spectrum(self.weight, self.kernel_size, size)

    def filter(self) -> torch.Tensor:
        """The spatial filter (C, H, W): the circular impulse response of ``weight``."""
        w = self.weight
        return torch.fft.irfft2(torch.view_as_complex(w.to(working_dtype(w.dtype)).contiguous()), s=self.kernel_size)

    def skip(self) -> torch.Tensor:
        """``D`` (C,): zero, GFNet has no skip."""
        return self.weight.new_zeros(self.weight.shape[0], dtype=working_dtype(self.weight.dtype))


class GlobalFilter(FFTLongConvMixer):
    """GFNet global filter: ``irfft2(K ⊙ rfft2(x))`` per channel over (H, W), one circular
    ``hyena::fft_conv`` call. Input and output (B, H, W, C).

    ``feature_size``: the (H, W) the filter is built for (the MetaFormer passes the stage's
    feature size); ``init_std``: the standard deviation of the weight's initialisation.
    """

    fft_mode = MODE_2D_CIRCULAR

    def __init__(self, dim: int, feature_size: int | Sequence[int] = 14, init_std: float = 0.02, **kwargs):
        super().__init__()
        self.dim = dim
        self.global_filter = GlobalFilterSpectrum(dim, feature_size, init_std)

    @property
    def filter_module(self) -> GlobalFilterSpectrum:
        return self.global_filter

    def fft_plan(self, height: int, width: int) -> FFTPlan:
        """Circular: the plan is the map itself, whatever size the filter was built for."""
        return plan_fft(MODE_2D_CIRCULAR, height, width)

    def _spectrum(self, plan: FFTPlan, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Kf is the parameter (resampled off the built size): nothing to cache; the frozen
        # buffers, when set, take precedence as for the Hyena mixers.
        if self.frozen_kf is not None:
            return super()._spectrum(plan, x)
        return self.global_filter.spectrum_for(plan.spatial), self.global_filter.skip()

    @torch.no_grad()
    def freeze(self, height: int, width: int) -> FFTPlan:
        """Store ``Kf`` (the weight, or its resampling to (height, width)) and ``D = 0`` in
        ``frozen_kf``/``frozen_d``, float32 as the op contract wants them."""
        plan = self.fft_plan(height, width)
        kf = self.global_filter.spectrum_for(plan.spatial)
        self.frozen_kf = kf.detach().to(working_dtype(kf.dtype)).clone()
        self.frozen_d = self.global_filter.skip().detach().clone()
        self.frozen_plan = plan
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fft_long_conv(x.permute(0, 3, 1, 2).contiguous())
        return y.permute(0, 2, 3, 1)
