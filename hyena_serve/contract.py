"""Names and numbers every part of hyena_serve shares.

The torch custom op, the ONNX node and function, the TensorRT plugin, the Triton configs
and the gateway all refer to the same op, attributes and tensor names. They are written
down once here; nothing else spells them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# --- the FFT-convolution op -----------------------------------------------------------

#: torch.library namespace and op name: ``torch.ops.hyena.fft_conv``.
TORCH_OP_NAMESPACE = "hyena"
TORCH_OP_NAME = "fft_conv"

#: ONNX custom op: node ``op_type`` in ``domain``, plus the model-local function of the
#: same (domain, name) whose body is made of standard ONNX ops.
ONNX_OP_DOMAIN = "hyena"
ONNX_OP_TYPE = "FFTConv"
ONNX_OP_VERSION = 1

#: Attributes the TensorRT ONNX parser reads to pick a registered plugin before falling
#: back to the local function.
PLUGIN_NAME = "FFTConv"
PLUGIN_NAMESPACE = "hyena"
PLUGIN_VERSION = "1"

#: Values of the ``mode`` attribute: centred ("same") linear 2D convolution, centred
#: linear 1D convolution over the map flattened in raster order, and circular 2D
#: convolution over the map (transform size = map size, no padding, no crop; GFNet).
MODE_2D = "2d"
MODE_1D_BIDIR = "1d_bidir"
MODE_2D_CIRCULAR = "2d_circular"
MODES = (MODE_2D, MODE_1D_BIDIR, MODE_2D_CIRCULAR)
#: The modes whose transform runs over (H, W); the others over the flattened map.
MODES_2D = (MODE_2D, MODE_2D_CIRCULAR)

#: Function bodies the exporter can give FFTConv: DFT-as-GEMM (fast) or plain ONNX DFT.
FFTCONV_BODIES = ("matmul", "dft")
#: Version of the FFTConv function bodies the exporter writes (the lowering strategies and
#: their thresholds); recorded in every manifest so a cached export made by an older
#: lowering is rebuilt, not reused. Bump it whenever hyena_serve/exporting/lowering_*.py
#: changes what it writes.
FFTCONV_LOWERING_VERSION = 2

#: The 2D real FFT pair (docs/design.md §4, "The spectral ops"): ``torch.ops.hyena.rfft2``
#: / ``torch.ops.hyena.irfft2``, ONNX ``hyena::RFFT2`` / ``hyena::IRFFT2`` (version 1, same
#: domain), TensorRT plugins of the same names in ``PLUGIN_NAMESPACE`` / ``PLUGIN_VERSION``.
#: The spectrum is planar: (B, 2C, H, W//2+1), real parts in channels [0, C), imaginary
#: parts in [C, 2C); both transforms are orthonormal (``norm="ortho"``).
TORCH_RFFT2_NAME = "rfft2"
TORCH_IRFFT2_NAME = "irfft2"
ONNX_RFFT2_TYPE = "RFFT2"
ONNX_IRFFT2_TYPE = "IRFFT2"
RFFT2_PLUGIN_NAME = "RFFT2"
IRFFT2_PLUGIN_NAME = "IRFFT2"
#: Function bodies of RFFT2/IRFFT2: DFT-as-GEMM (fast) or plain ONNX DFT, chosen with the
#: FFTConv body option.
SPECTRAL_BODIES = ("matmul", "dft")

#: Default opset of exported models (ONNX DFT needs >= 17; 20 is the exporter default).
ONNX_OPSET = 20

# --- model I/O tensor names (ONNX graph, Triton configs, gateway) ----------------------

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"

#: The ``config.pbtxt`` parameter holding the served model's manifest (JSON), from which a
#: gateway in front of Triton learns preprocessing and labels.
TRITON_MANIFEST_PARAMETER = "hyena_manifest"


@dataclass(frozen=True)
class FFTPlan:
    """Sizes of one FFT convolution over the trailing spatial dims.

    ``spatial``: the input's spatial size (``(H, W)`` in the 2d modes, ``(L,)`` in 1d mode
    with ``L = H*W``); ``kernel``: the filter size per dim; ``fft``: the transform size per
    dim. The output keeps ``[s : s + n]`` of the circular result along each dim, with
    ``s = crop_start``: ``k//2`` for the linear modes (the filter centre lands on the
    output pixel), 0 in circular mode (where ``kernel == fft == spatial``).
    """

    mode: str
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    fft: tuple[int, ...]

    @property
    def circular(self) -> bool:
        return self.mode == MODE_2D_CIRCULAR

    @property
    def crop_start(self) -> tuple[int, ...]:
        if self.circular:
            return (0,) * len(self.kernel)
        return tuple(k // 2 for k in self.kernel)

    @property
    def spectrum_shape(self) -> tuple[int, ...]:
        """Shape of the half spectrum (rfftn over the trailing dims), without channels."""
        return (*self.fft[:-1], self.fft[-1] // 2 + 1)


def fft_size(n: int, k: int) -> int:
    """Smallest FFT length that makes the centred circular convolution of a length-``n``
    signal with a length-``k`` filter equal to the linear ("same") one.

    Keeping ``[k//2, k//2 + n)`` of the circular result is alias-free when the length is
    at least ``n + k//2``; it must also hold the whole filter, hence ``max(2n, k)``, the
    size the reference implementation uses (it is >= ``n + k//2`` for every ``k``).
    """
    if n < 1 or k < 1:
        raise ValueError(f"fft_size needs positive sizes, got n={n}, k={k}")
    return max(2 * n, k)


def to_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``7`` -> ``(7, 7)``; ``(7, 9)`` -> ``(7, 9)``: sizes given as one number or per axis."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def plan_fft(mode: str, height: int, width: int, kernel: tuple[int, ...] | int | None = None) -> FFTPlan:
    """The :class:`FFTPlan` for an ``(H, W)`` feature map in ``mode``.

    2d: ``kernel`` is ``(Kh, Kw)`` (or one int for a square filter). 1d_bidir: the map is
    flattened in raster order to ``L = H*W`` and ``kernel`` is the filter length ``K``.
    2d_circular: the filter spans the whole map, so ``kernel`` is ``None`` or must be
    ``(H, W)`` (anything else raises: a circular filter of another size is not this op);
    the plan is ``kernel = fft = spatial = (H, W)``.
    """
    if mode == MODE_2D_CIRCULAR:
        if height < 1 or width < 1:
            raise ValueError(f"plan_fft: circular mode needs a non-empty map, got {height}x{width}")
        if kernel is not None and to_pair(kernel) != (height, width):
            raise ValueError(f"plan_fft: in {mode!r} mode the filter spans the map: kernel must be "
                             f"({height}, {width}) or None, got {kernel}")
        return FFTPlan(mode, (height, width), (height, width), (height, width))
    if kernel is None:
        raise ValueError(f"plan_fft: mode {mode!r} needs a kernel size")
    if mode == MODE_2D:
        kh, kw = to_pair(kernel)
        return FFTPlan(mode, (height, width), (kh, kw), (fft_size(height, kh), fft_size(width, kw)))
    if mode == MODE_1D_BIDIR:
        (k,) = (kernel,) if isinstance(kernel, int) else tuple(kernel)
        n = height * width
        return FFTPlan(mode, (n,), (k,), (fft_size(n, k),))
    raise ValueError(f"unknown FFT-conv mode {mode!r}; expected one of {MODES}")
