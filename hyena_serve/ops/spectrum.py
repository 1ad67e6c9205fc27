"""Spatial filter -> padded half spectrum, the form the FFT-conv op consumes.

Used by the training path (every step, differentiable) and by the eval/export cache
(once per resolution), so both feed the op exactly the same numbers.
"""

from __future__ import annotations

import torch

from hyena_serve.contract import FFTPlan


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFTs run in float32, or float64 when the input already is (tests, gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def filter_spectrum(k: torch.Tensor, plan: FFTPlan) -> torch.Tensor:
    """``rfftn`` of the filter ``k`` (C, *kernel) zero-padded to ``plan.fft``.

    Returns the real view (C, *plan.spectrum_shape, 2): real and imaginary parts
    interleaved, which is the layout of the op's ``Kf`` input, of the ONNX initializer and
    of cuFFT's complex type.
    """
    expected = tuple(plan.kernel)
    if tuple(k.shape[1:]) != expected:
        raise ValueError(f"filter has spatial shape {tuple(k.shape[1:])}, plan expects {expected}")
    dims = tuple(range(-len(plan.fft), 0))
    spec = torch.fft.rfftn(k.to(working_dtype(k.dtype)), s=plan.fft, dim=dims)
    return torch.view_as_real(spec)
