"""The torch reference on a CUDA GPU (no TensorRT): ``fft_conv`` forward and backward
against CPU float64, model logits CUDA vs CPU, cached vs recomputed filters, and the torch
serving backend on ``cuda``. Part of ``make gpu-check``; skipped without a CUDA GPU.

fp32 means fp32: TF32 is switched off for the module (matmuls and cuDNN), so tolerances
are those of fp32 rounding. Relative errors are max |a - b| / max |b|; an indexing or
cropping bug gives errors of order 1, fp32 rounding through the transforms here stays
near 1e-6, so the fp32 bounds below leave a wide margin and still catch every bug.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, MODE_2D_CIRCULAR, MODES, plan_fft
from hyena_serve.ops import (
    direct_conv2d,
    fft_conv,
    fft_conv1d_bidir_ref,
    fft_conv2d_circular_ref,
    fft_conv2d_ref,
    filter_spectrum,
)
from hyena_serve.ops.spectral import irfft2

pytestmark = pytest.mark.gpu

DEVICE = "cuda"
FP32_TOL = 1e-4
# (H, W, Kh, Kw): odd, non-square, filters smaller and larger than the map, even sizes,
# and the S18 stage shapes (K = 2H-1) with their channel counts.
SHAPES_2D = [
    (2, 5, 9, 3, 5),
    (3, 13, 11, 25, 21),
    (2, 8, 6, 15, 11),
    (3, 9, 9, 40, 2),
    (64, 56, 56, 111, 111),
    (128, 28, 28, 55, 55),
    (320, 14, 14, 27, 27),
    (512, 7, 7, 13, 13),
]
# (C, H, W, K), L = H·W: K = 2L-1 at the S18 stage shapes, shorter, longer and even K.
SHAPES_1D = [
    (3, 3, 5, 29),
    (2, 7, 9, 40),
    (4, 11, 13, 101),
    (64, 56, 56, 6271),
    (128, 28, 28, 1567),
    (320, 14, 14, 391),
    (512, 7, 7, 97),
]
# (C, H, W) of the circular mode (the filter is the map's size): odd, even, non-square,
# and the gf_former_s18 stage shapes.
SHAPES_CIRCULAR = [(3, 7, 5), (2, 8, 6), (3, 13, 1), (64, 56, 56), (512, 7, 7)]


@pytest.fixture(scope="module", autouse=True)
def _fp32_is_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    return ((a - b).abs().max() / b.abs().max()).item()


def _case(mode: str, c: int, h: int, w: int, kernel, batch: int = 2):
    """Input, filter, skip (CPU float64) and the plan of one op call."""
    x = torch.randn(batch, c, h, w, dtype=torch.float64)
    k = torch.randn(c, *((kernel,) if mode == MODE_1D_BIDIR else kernel), dtype=torch.float64) * 0.05
    d = torch.randn(c, dtype=torch.float64)
    return x, k, d, plan_fft(mode, h, w, kernel)


def _reference(mode: str, x, k, d):
    """CPU float64 result (the reference FFT conv, itself tested against the direct one)."""
    if mode == MODE_2D:
        return fft_conv2d_ref(x, k, d)
    if mode == MODE_2D_CIRCULAR:
        return fft_conv2d_circular_ref(x, k, d)
    return fft_conv1d_bidir_ref(x.flatten(-2), k, d).reshape(x.shape)


def _op(x, k, d, plan):
    return fft_conv(x, filter_spectrum(k, plan), d, plan.mode, list(plan.kernel), list(plan.fft))


CASES = ([pytest.param(MODE_2D, c, h, w, (kh, kw), id=f"2d-{c}x{h}x{w}-k{kh}x{kw}") for c, h, w, kh, kw in SHAPES_2D]
         + [pytest.param(MODE_1D_BIDIR, c, h, w, k, id=f"1d-{c}x{h}x{w}-k{k}") for c, h, w, k in SHAPES_1D]
         + [pytest.param(MODE_2D_CIRCULAR, c, h, w, (h, w), id=f"circ-{c}x{h}x{w}") for c, h, w in SHAPES_CIRCULAR])


@pytest.mark.parametrize(("mode", "c", "h", "w", "kernel"), CASES)
def test_fft_conv_forward_on_cuda_matches_cpu_float64(mode, c, h, w, kernel):
    x, k, d, plan = _case(mode, c, h, w, kernel)
    expected = _reference(mode, x, k, d)
    xc, kc, dc = x.to(DEVICE), k.to(DEVICE), d.to(DEVICE)
    y64 = _op(xc, kc, dc, plan)
    assert y64.device.type == DEVICE and y64.dtype == torch.float64
    assert _rel_err(y64, expected) <= 1e-10
    y32 = _op(xc.float(), kc.float(), dc.float(), plan)
    assert y32.dtype == torch.float32
    assert _rel_err(y32, expected) <= FP32_TOL
    # low-precision inputs: only their rounding differs (the op computes in fp32)
    for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)):
        xl = xc.to(dtype)
        y = _op(xl, kc.float(), dc.float(), plan)
        assert y.dtype == dtype
        assert _rel_err(y, _reference(mode, xl.cpu().double(), k, d)) <= tol


@pytest.mark.parametrize(("mode", "c", "h", "w", "kernel"), [
    pytest.param(MODE_2D, 3, 7, 5, (13, 9), id="2d-odd"),
    pytest.param(MODE_2D, 64, 56, 56, (111, 111), id="2d-s18-stage0"),
    pytest.param(MODE_1D_BIDIR, 3, 5, 7, 69, id="1d-odd"),
    pytest.param(MODE_1D_BIDIR, 64, 56, 56, 6271, id="1d-s18-stage0"),
    pytest.param(MODE_2D_CIRCULAR, 3, 7, 6, (7, 6), id="circ-odd-even"),
    pytest.param(MODE_2D_CIRCULAR, 64, 56, 56, (56, 56), id="circ-s18-stage0"),
])
def test_fft_conv_backward_on_cuda_matches_cpu_float64(mode, c, h, w, kernel):
    x, k, d, plan = _case(mode, c, h, w, kernel)
    g = torch.randn(x.shape, dtype=torch.float64)

    def grads(device, dtype):
        leaves = [t.to(device=device, dtype=dtype, copy=True).requires_grad_() for t in (x, k, d)]
        y = _op(*leaves, plan)
        y.backward(g.to(device=device, dtype=dtype))
        return [t.grad for t in leaves]

    expected = grads("cpu", torch.float64)
    for got, want, name in zip(grads(DEVICE, torch.float32), expected, ("x", "k", "d")):
        assert got.device.type == DEVICE
        assert _rel_err(got, want) <= FP32_TOL, name
    for got, want, name in zip(grads(DEVICE, torch.float64), expected, ("x", "k", "d")):
        assert _rel_err(got, want) <= 1e-10, name


@pytest.mark.parametrize("mode", MODES)
def test_fft_conv_gradcheck_on_cuda(mode):
    plan = plan_fft(mode, 3, 5, {MODE_2D: (5, 3), MODE_1D_BIDIR: 17, MODE_2D_CIRCULAR: None}[mode])
    u = torch.randn(2, 2, 3, 5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    kf = torch.randn(2, *plan.spectrum_shape, 2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    d = torch.randn(2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, e: fft_conv(a, b, e, mode, list(plan.kernel), list(plan.fft)),
                                    (u, kf, d))


# --- non-Hermitian spectra: a learned GFNet filter, an AFF-masked spectrum --------------------
#
# cuFFT's complex-to-real transforms assume a Hermitian input and leave the result for any
# other undefined (cuFFT documentation, "FFT types"); torch's CUDA irfft has been seen to use
# the imaginary part of the DC column (pytorch/pytorch#154496). The op contract
# (docs/design.md §4) takes the DC (and even-W Nyquist) column as real after the inverse
# transform along H, as the CPU does and the ONNX bodies and plugins do. GFNet's Kf is a
# free complex parameter and AFF multiplies the spectrum by a learned mask, so neither is
# Hermitian: these cases hold the CUDA ops to the contract on such input.

NON_HERMITIAN = [(7, 7), (6, 8), (56, 56), (1, 6), (5, 1)]


@pytest.mark.parametrize(("h", "w"), NON_HERMITIAN)
def test_irfft2_on_cuda_reads_a_non_hermitian_spectrum_as_the_cpu_does(h, w):
    y = torch.randn(2, 6, h, w // 2 + 1, dtype=torch.float64)
    got = irfft2(y.float().to(DEVICE), w)
    assert got.device.type == DEVICE
    assert _rel_err(got, irfft2(y, w)) <= FP32_TOL


@pytest.mark.parametrize(("h", "w"), NON_HERMITIAN)
def test_circular_fft_conv_on_cuda_with_a_non_hermitian_filter_matches_cpu(h, w):
    plan = plan_fft(MODE_2D_CIRCULAR, h, w)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    kf = torch.randn(3, *plan.spectrum_shape, 2, dtype=torch.float64)  # any complex values, as GFNet learns
    d = torch.randn(3, dtype=torch.float64)

    def run(*tensors):
        return fft_conv(*tensors, plan.mode, list(plan.kernel), list(plan.fft))

    got = run(x.float().to(DEVICE), kf.float().to(DEVICE), d.float().to(DEVICE))
    assert got.device.type == DEVICE
    assert _rel_err(got, run(x, kf, d)) <= FP32_TOL


def test_fft_conv_on_cuda_matches_direct_convolution():
    # the direct (cuDNN) convolution, not another FFT, as the second opinion on the GPU
    x, k, d, plan = _case(MODE_2D, 8, 15, 13, (29, 25))
    xc, kc, dc = x.to(DEVICE).float(), k.to(DEVICE).float(), d.to(DEVICE).float()
    assert _rel_err(_op(xc, kc, dc, plan), direct_conv2d(x, k, d)) <= FP32_TOL
    assert _rel_err(direct_conv2d(xc, kc, dc), direct_conv2d(x, k, d)) <= FP32_TOL


# --- models ---------------------------------------------------------------------------------

SMALL = dict(num_classes=10, img_size=32, dims=(32, 64, 64, 96))
MODELS = ["hpx_former_s4", "hb_former_s4", "c_hpx_former_s4", "gf_former_s4", "aff_former_s4"]


def _model(name: str, **overrides):
    from hyena_serve.models import create_model

    torch.manual_seed(0)
    return create_model(name, **{**SMALL, **overrides}).eval()


@pytest.mark.parametrize("name", MODELS)
def test_model_logits_cuda_match_cpu(name):
    model = _model(name)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        cpu32 = model(x)
        cuda32 = model.to(DEVICE)(x.to(DEVICE))
    assert cuda32.device.type == DEVICE
    # fp32 on both sides, different FFT/GEMM libraries: rounding only
    assert _rel_err(cuda32, cpu32) <= 1e-4


@pytest.mark.parametrize("name", ["hpx_former_s18", "hb_former_s18", "gf_former_s18", "aff_former_s18"])
def test_s18_logits_cuda_match_cpu_at_224(name):
    from hyena_serve.models import create_model

    torch.manual_seed(0)
    model = create_model(name, img_size=224).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        cpu = model(x)
        cuda = model.to(DEVICE)(x.to(DEVICE))
    assert _rel_err(cuda, cpu) <= 1e-4


@pytest.mark.parametrize("name", ["hpx_former_s4", "hb_former_s4"])
def test_cached_and_frozen_filters_on_cuda_match_recomputed(name):
    from hyena_serve.models.frozen import freeze_filters, hyena_mixers

    model = _model(name).to(DEVICE)
    x = torch.randn(2, 3, 32, 32, device=DEVICE)
    with torch.no_grad():
        recomputed = model.train()(x)  # no dropout / drop-path in these models: only the filters differ
        model.eval()
        first = model(x)  # fills the cache
        for _, mixer in hyena_mixers(model):
            kf = mixer._kf_cache[1]
            assert kf.device.type == DEVICE and kf.dtype == torch.float32
        cached = model(x)
        freeze_filters(model, 32)
        frozen = model(x)
    assert torch.equal(first, cached)
    assert _rel_err(cached, recomputed) <= 1e-5
    assert _rel_err(frozen, recomputed) <= 1e-5
    for _, mixer in hyena_mixers(model):
        assert mixer.frozen_kf.device.type == DEVICE


def test_filter_cache_follows_the_device():
    model = _model("hpx_former_s4")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        cpu = model(x)  # cache on the CPU
        cuda = model.to(DEVICE)(x.to(DEVICE))  # must not reuse the CPU spectrum
        back = model.cpu()(x)
    assert _rel_err(cuda, cpu) <= 1e-4
    assert torch.equal(back, cpu) or _rel_err(back, cpu) <= 1e-6


# --- the torch serving backend ------------------------------------------------------------


def test_torch_backend_serves_on_cuda():
    from hyena_serve.artifact import ModelSpec
    from hyena_serve.runtime.torch_backend import TorchBackend

    spec = ModelSpec.of("hpx_former_s4", resolution=32, model_kwargs={"dims": [32, 64, 64, 96], "num_classes": 10})
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)

    async def serve(device: str) -> np.ndarray:
        backend = TorchBackend(spec, max_batch_size=4, device=device)
        await backend.start()
        try:
            return await backend.infer(batch)
        finally:
            await backend.close()

    on_cuda = asyncio.run(serve(DEVICE))
    on_cpu = asyncio.run(serve("cpu"))
    assert on_cuda.shape == (3, 10) and on_cuda.dtype == np.float32
    assert _rel_err(torch.from_numpy(on_cuda), torch.from_numpy(on_cpu)) <= 1e-4
