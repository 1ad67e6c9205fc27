"""Building blocks of the HyenaPixel family: norms, MLPs, token mixers, implicit filters."""

from hyena_serve.layers.adaptive_filter import AdaptiveFrequencyFilter, adaptive_filter_reference
from hyena_serve.layers.attention import Attention
from hyena_serve.layers.drop import DropPath, drop_path
from hyena_serve.layers.fft_long_conv import FFTLongConvMixer
from hyena_serve.layers.global_filter import GlobalFilter, GlobalFilterSpectrum, resample_circular_spectrum
from hyena_serve.layers.hyena_bidir import HyenaBidirMixer, global_kernel_1d
from hyena_serve.layers.hyena_pixel import HyenaPixelMixer, global_kernel_2d
from hyena_serve.layers.implicit_filter import (
    HyenaFilter,
    HyenaPixelFilter,
    centre_distance,
    sincos_pos_emb_2d,
)
from hyena_serve.layers.local_attention import LocalSelfAttention, local_attention_reference
from hyena_serve.layers.mlp import Mlp, MlpHead, SquaredReLU, StarReLU
from hyena_serve.layers.norms import LayerNormWithoutBias, Scale
from hyena_serve.layers.sepconv import SepConv

__all__ = [
    "AdaptiveFrequencyFilter",
    "Attention",
    "DropPath",
    "FFTLongConvMixer",
    "GlobalFilter",
    "GlobalFilterSpectrum",
    "HyenaBidirMixer",
    "HyenaFilter",
    "HyenaPixelFilter",
    "HyenaPixelMixer",
    "LayerNormWithoutBias",
    "LocalSelfAttention",
    "Mlp",
    "MlpHead",
    "Scale",
    "SepConv",
    "SquaredReLU",
    "StarReLU",
    "adaptive_filter_reference",
    "centre_distance",
    "drop_path",
    "global_kernel_1d",
    "global_kernel_2d",
    "local_attention_reference",
    "resample_circular_spectrum",
    "sincos_pos_emb_2d",
]
