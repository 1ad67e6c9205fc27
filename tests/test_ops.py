"""The FFT-conv op against the direct convolution (linear modes) and the direct circular sum
over shifts (circular mode), its gradients and its torch.library contract."""

from __future__ import annotations

import pytest
import torch

from hyena_serve.contract import (
    MODE_1D_BIDIR,
    MODE_2D,
    MODE_2D_CIRCULAR,
    MODES,
    fft_size,
    plan_fft,
)
from hyena_serve.ops import (
    direct_circular_conv2d,
    direct_conv1d_bidir,
    direct_conv2d,
    fft_conv,
    fft_conv1d_bidir_ref,
    fft_conv2d_circular_ref,
    fft_conv2d_ref,
    filter_spectrum,
)

# (H, W, Kh, Kw): odd, even, non-square, non-power-of-two maps; filters smaller than,
# equal to (2H-1, global) and larger than the map; even filter sizes too.
SHAPES_2D = [
    (7, 7, 13, 13),  # the "global" case K = 2H-1
    (5, 9, 3, 5),
    (8, 6, 15, 11),
    (6, 10, 25, 3),  # filter larger than 2H along H
    (4, 4, 2, 4),  # even filter sizes
    (3, 5, 1, 1),  # a pure pointwise filter
    (12, 11, 9, 23),
]
# (H, W, K) with L = H*W: K = 2L-1, shorter and longer filters, even K.
SHAPES_1D = [(3, 4, 23), (5, 3, 7), (2, 7, 40), (4, 4, 10), (1, 9, 17)]
# (H, W) of the circular mode (the filter is the map's size): odd, even, prime,
# non-square, a single row / column, 1×1.
SHAPES_CIRCULAR = [(7, 7), (6, 8), (5, 9), (13, 11), (4, 1), (1, 6), (1, 1), (14, 14)]
# A plan's filter size per mode for a (H, W) map in the mode-generic tests below.
_KERNEL = {MODE_2D: (3, 5), MODE_1D_BIDIR: 17, MODE_2D_CIRCULAR: None}


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(("h", "w", "kh", "kw"), SHAPES_2D)
def test_fft_conv2d_matches_direct_convolution_in_float64(h, w, kh, kw):
    u = torch.randn(2, 3, h, w, dtype=torch.float64)
    k = torch.randn(3, kh, kw, dtype=torch.float64)
    d = torch.randn(3, dtype=torch.float64)
    expected = direct_conv2d(u, k, d)
    assert _rel_err(fft_conv2d_ref(u, k, d), expected) <= 1e-10
    plan = plan_fft(MODE_2D, h, w, (kh, kw))
    y = fft_conv(u, filter_spectrum(k, plan), d, MODE_2D, list(plan.kernel), list(plan.fft))
    assert _rel_err(y, expected) <= 1e-10


@pytest.mark.parametrize(("h", "w", "k"), SHAPES_1D)
def test_fft_conv1d_bidir_matches_direct_convolution_in_float64(h, w, k):
    u = torch.randn(2, 3, h, w, dtype=torch.float64)
    filt = torch.randn(3, k, dtype=torch.float64)
    d = torch.randn(3, dtype=torch.float64)
    expected = direct_conv1d_bidir(u.flatten(-2), filt, d).reshape(u.shape)
    assert _rel_err(fft_conv1d_bidir_ref(u.flatten(-2), filt, d).reshape(u.shape), expected) <= 1e-10
    plan = plan_fft(MODE_1D_BIDIR, h, w, k)
    y = fft_conv(u, filter_spectrum(filt, plan), d, MODE_1D_BIDIR, list(plan.kernel), list(plan.fft))
    assert _rel_err(y, expected) <= 1e-10


def test_direct_conv2d_is_a_true_convolution_not_a_correlation():
    # A single impulse at (1, 1) in a 3x3 map with an asymmetric 3x3 filter: a convolution
    # reproduces the filter itself around the impulse, a correlation its flip.
    u = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    u[0, 0, 1, 1] = 1.0
    k = torch.arange(9, dtype=torch.float64).reshape(1, 3, 3)
    torch.testing.assert_close(direct_conv2d(u, k)[0], k)
    torch.testing.assert_close(fft_conv2d_ref(u, k)[0], k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_op_keeps_dtype_and_computes_in_float32(dtype):
    u = torch.randn(2, 4, 6, 5)
    k = torch.randn(4, 11, 9)
    d = torch.randn(4)
    plan = plan_fft(MODE_2D, 6, 5, (11, 9))
    y = fft_conv(u.to(dtype), filter_spectrum(k, plan), d, MODE_2D, list(plan.kernel), list(plan.fft))
    assert y.dtype == dtype and y.shape == u.shape
    # Only the input rounding differs from the fp32 result: a tolerance of a few ulps of
    # the low-precision type, scaled by the output magnitude.
    ref = direct_conv2d(u.to(dtype).float(), k, d)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    assert _rel_err(y.float(), ref) <= tol


def test_gradcheck_2d_through_spectrum_and_skip():
    plan = plan_fft(MODE_2D, 4, 5, (5, 3))
    u = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def f(u, k, d):
        return fft_conv(u, filter_spectrum(k, plan), d, MODE_2D, list(plan.kernel), list(plan.fft))

    assert torch.autograd.gradcheck(f, (u, k, d))


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_on_arbitrary_spectrum(mode):
    # Kf as a free real tensor, including imaginary parts at DC/Nyquist that no real filter
    # produces: the closed-form backward must be right for every input, not only Hermitian ones.
    h, w = 3, 4
    plan = plan_fft(mode, h, w, _KERNEL[mode])
    u = torch.randn(2, 2, h, w, dtype=torch.float64, requires_grad=True)
    kf = torch.randn(2, *plan.spectrum_shape, 2, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: fft_conv(a, b, c, mode, list(plan.kernel), list(plan.fft)), (u, kf, d)
    )


@pytest.mark.parametrize("mode", MODES)
def test_opcheck(mode):
    plan = plan_fft(mode, 5, 3, {MODE_2D: (3, 7), MODE_1D_BIDIR: 29, MODE_2D_CIRCULAR: None}[mode])
    u = torch.randn(2, 3, 5, 3, requires_grad=True)
    kf = torch.randn(3, *plan.spectrum_shape, 2, requires_grad=True)
    d = torch.randn(3, requires_grad=True)
    torch.library.opcheck(torch.ops.hyena.fft_conv.default, (u, kf, d, mode, list(plan.kernel), list(plan.fft)))


@pytest.mark.parametrize("mode", MODES)
def test_op_under_torch_compile_matches_eager(mode):
    plan = plan_fft(mode, 6, 5, {MODE_2D: 11, MODE_1D_BIDIR: 59, MODE_2D_CIRCULAR: None}[mode])
    u = torch.randn(2, 3, 6, 5)
    kf = filter_spectrum(torch.randn(3, *plan.kernel), plan)
    d = torch.randn(3)

    def f(u):
        return torch.relu(fft_conv(u, kf, d, mode, list(plan.kernel), list(plan.fft)))

    compiled = torch.compile(f, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(u), f(u))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(mode="3d"), "unknown mode"),
        (dict(kernel_size=[11]), "needs 2 kernel/fft sizes"),
        # 10 < H + Kh//2 = 11: the circular result would wrap into the kept rows.
        (dict(fft_size=[10, 12], kf=torch.randn(3, 10, 7, 2)), "aliases"),
        (dict(kf=torch.randn(3, 22, 10, 2)), "kf has shape"),
        (dict(d=torch.randn(4)), "d must have shape"),
    ],
)
def test_op_rejects_inconsistent_arguments(args, message):
    plan = plan_fft(MODE_2D, 6, 6, 11)
    call = dict(x=torch.randn(1, 3, 6, 6), kf=torch.randn(3, *plan.spectrum_shape, 2), d=torch.randn(3),
                mode=MODE_2D, kernel_size=list(plan.kernel), fft_size=list(plan.fft))
    call.update(args)
    with pytest.raises(ValueError, match=message):
        fft_conv(**call)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (5, 9), (56, 111), (7, 40), (3136, 6271)])
def test_fft_size_is_alias_free(n, k):
    size = fft_size(n, k)
    assert size >= n + k // 2 and size >= k


# --- the circular mode ------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), SHAPES_CIRCULAR)
def test_fft_conv_circular_matches_direct_circular_sum_in_float64(h, w):
    u = torch.randn(2, 3, h, w, dtype=torch.float64)
    k = torch.randn(3, h, w, dtype=torch.float64)
    d = torch.randn(3, dtype=torch.float64)
    expected = direct_circular_conv2d(u, k, d)
    assert _rel_err(fft_conv2d_circular_ref(u, k, d), expected) <= 1e-10
    plan = plan_fft(MODE_2D_CIRCULAR, h, w)
    y = fft_conv(u, filter_spectrum(k, plan), d, MODE_2D_CIRCULAR, list(plan.kernel), list(plan.fft))
    assert _rel_err(y, expected) <= 1e-10


def test_direct_circular_conv2d_wraps_around_the_map():
    # An impulse at (2, 3) of a 4x5 map: a circular convolution reproduces the filter
    # rolled by (2, 3), its taps past the bottom/right edge wrapping to the top/left.
    u = torch.zeros(1, 1, 4, 5, dtype=torch.float64)
    u[0, 0, 2, 3] = 1.0
    k = torch.arange(20, dtype=torch.float64).reshape(1, 4, 5)
    expected = torch.roll(k, shifts=(2, 3), dims=(-2, -1))
    assert expected[0, 0, 0] == k[0, 2, 2]  # the wrapped tap: (0 - 2) mod 4, (0 - 3) mod 5
    torch.testing.assert_close(direct_circular_conv2d(u, k)[0], expected)
    torch.testing.assert_close(fft_conv2d_circular_ref(u, k)[0], expected)


def test_circular_plan():
    plan = plan_fft(MODE_2D_CIRCULAR, 7, 4)
    assert (plan.spatial, plan.kernel, plan.fft) == ((7, 4), (7, 4), (7, 4))
    assert plan.circular and plan.crop_start == (0, 0) and plan.spectrum_shape == (7, 3)
    assert plan_fft(MODE_2D_CIRCULAR, 7, 4, (7, 4)) == plan
    assert plan_fft(MODE_2D, 7, 4, (3, 5)).crop_start == (1, 2) and not plan_fft(MODE_2D, 7, 4, 3).circular
    with pytest.raises(ValueError, match="spans the map"):
        plan_fft(MODE_2D_CIRCULAR, 7, 4, (13, 7))
    with pytest.raises(ValueError, match="needs a kernel size"):
        plan_fft(MODE_2D, 7, 4)


def test_gradcheck_circular_through_spectrum_and_skip():
    plan = plan_fft(MODE_2D_CIRCULAR, 5, 4)
    u = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def f(u, k, d):
        return fft_conv(u, filter_spectrum(k, plan), d, MODE_2D_CIRCULAR, list(plan.kernel), list(plan.fft))

    assert torch.autograd.gradcheck(f, (u, k, d))


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 7), (6, 6)])
def test_gradcheck_circular_on_arbitrary_spectrum_odd_even_and_tiny(h, w):
    plan = plan_fft(MODE_2D_CIRCULAR, h, w)
    u = torch.randn(2, 2, h, w, dtype=torch.float64, requires_grad=True)
    kf = torch.randn(2, *plan.spectrum_shape, 2, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: fft_conv(a, b, c, MODE_2D_CIRCULAR, list(plan.kernel), list(plan.fft)), (u, kf, d))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_circular_op_keeps_dtype_and_computes_in_float32(dtype):
    u = torch.randn(2, 4, 6, 5)
    k = torch.randn(4, 6, 5)
    d = torch.randn(4)
    plan = plan_fft(MODE_2D_CIRCULAR, 6, 5)
    y = fft_conv(u.to(dtype), filter_spectrum(k, plan), d, MODE_2D_CIRCULAR, list(plan.kernel), list(plan.fft))
    assert y.dtype == dtype and y.shape == u.shape
    ref = direct_circular_conv2d(u.to(dtype).float(), k, d)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]  # as the linear test
    assert _rel_err(y.float(), ref) <= tol


@pytest.mark.parametrize(("kernel_size", "fft_size"), [([11, 11], [6, 6]), ([6, 6], [12, 12]), ([6, 5], [6, 5])])
def test_circular_op_requires_kernel_and_fft_size_equal_to_the_map(kernel_size, fft_size):
    x = torch.randn(1, 3, 6, 6)
    kf = torch.randn(3, fft_size[0], fft_size[1] // 2 + 1, 2)
    with pytest.raises(ValueError, match=r"kernel_size == fft_size == spatial size \[6, 6\]"):
        fft_conv(x, kf, torch.randn(3), MODE_2D_CIRCULAR, kernel_size, fft_size)
