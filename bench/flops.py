"""FLOPs of a forward pass, counted by ``torch.utils.flop_counter`` with formulas for the
project's FFT custom ops (flop_counter knows GEMMs and convolutions, not FFTs).

Convention (stated wherever the numbers appear): a GEMM or convolution counts 2 FLOPs per
multiply-add; a real FFT of N points counts 2.5·N·log2(N) FLOPs (half the 5·N·log2(N)
customary for a complex one); a complex product counts 6 FLOPs; element-wise ops are not
counted.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

import hyena_serve.ops  # noqa: F401  (registers torch.ops.hyena.*)
from hyena_serve.contract import FFTPlan


def real_fft_flops(n: int) -> float:
    """One real transform (forward or inverse) of ``n`` points."""
    return 2.5 * n * math.log2(n) if n > 1 else 0.0


def fft_conv_flops(batch: int, channels: int, plan: FFTPlan) -> int:
    """Forward + inverse transform over the padded size, the spectral product, and the skip."""
    n = math.prod(plan.fft)
    half = math.prod(plan.spectrum_shape)
    return int(batch * channels * (2 * real_fft_flops(n) + 6 * half + 2 * math.prod(plan.spatial)))


def _register() -> None:
    # A module-level decorator would fail on re-import (flop_counter refuses a second
    # registration); registering through this guard keeps `import bench.flops` idempotent.
    from torch.utils.flop_counter import flop_registry

    if torch.ops.hyena.fft_conv in flop_registry:
        return

    @register_flop_formula(torch.ops.hyena.fft_conv)
    def _fft_conv(x_shape, kf_shape, d_shape, mode, kernel_size, fft_size, *args, out_shape=None, **kwargs) -> int:
        from hyena_serve.contract import MODE_1D_BIDIR

        b, c, h, w = x_shape
        spatial = (h * w,) if mode == MODE_1D_BIDIR else (h, w)
        return fft_conv_flops(b, c, FFTPlan(mode, spatial, tuple(kernel_size), tuple(fft_size)))

    # rfft2 / irfft2 (the AFF mixer's transforms): one real 2D transform of the (B, C, H, W)
    # side; the planar spectrum side has 2C channels.
    if hasattr(torch.ops.hyena, "rfft2"):
        @register_flop_formula(torch.ops.hyena.rfft2)
        def _rfft2(x_shape, *args, out_shape=None, **kwargs) -> int:
            b, c, h, w = x_shape
            return int(b * c * real_fft_flops(h * w))

    if hasattr(torch.ops.hyena, "irfft2"):
        @register_flop_formula(torch.ops.hyena.irfft2)
        def _irfft2(y_shape, *args, out_shape=None, **kwargs) -> int:
            b, c, h, w = out_shape
            return int(b * c * real_fft_flops(h * w))


_register()


def count(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """Total FLOPs of ``module(*inputs)`` in inference mode."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(*inputs)
    return int(counter.get_total_flops())
