"""The FFT long convolution: reference functions, the custom op, filter spectra."""

from hyena_serve.ops.fftconv import fft_conv
from hyena_serve.ops.reference import (
    direct_conv1d_bidir,
    direct_conv2d,
    fft_conv1d_bidir_ref,
    fft_conv2d_ref,
)
from hyena_serve.ops.spectrum import filter_spectrum, working_dtype

__all__ = [
    "direct_conv1d_bidir",
    "direct_conv2d",
    "fft_conv",
    "fft_conv1d_bidir_ref",
    "fft_conv2d_ref",
    "filter_spectrum",
    "working_dtype",
]
