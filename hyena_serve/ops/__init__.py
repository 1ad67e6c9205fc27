"""The FFT long convolution: reference functions, the custom op, filter spectra; the 2D
real FFT pair (rfft2/irfft2) as custom ops."""

from hyena_serve.ops.fftconv import fft_conv
from hyena_serve.ops.reference import (
    direct_circular_conv2d,
    direct_conv1d_bidir,
    direct_conv2d,
    fft_conv1d_bidir_ref,
    fft_conv2d_circular_ref,
    fft_conv2d_ref,
)
from hyena_serve.ops.spectral import irfft2, rfft2
from hyena_serve.ops.spectrum import filter_spectrum, working_dtype

__all__ = [
    "direct_circular_conv2d",
    "direct_conv1d_bidir",
    "direct_conv2d",
    "fft_conv",
    "fft_conv1d_bidir_ref",
    "fft_conv2d_circular_ref",
    "fft_conv2d_ref",
    "filter_spectrum",
    "irfft2",
    "rfft2",
    "working_dtype",
]
