"""The 2D real FFT pair (torch.ops.hyena.rfft2 / irfft2) against torch.fft, their closed-form
gradients against numerical ones, and their torch.library contract (opcheck, compile)."""

from __future__ import annotations

import pytest
import torch

from hyena_serve.ops import irfft2, rfft2

# (H, W): odd, even, prime, non-square, a single pixel, a single row or column.
SHAPES = [(7, 7), (8, 6), (5, 13), (11, 4), (1, 1), (1, 9), (6, 1), (3, 2)]


def _planar(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([z.real, z.imag], dim=1)


def _complex(y: torch.Tensor) -> torch.Tensor:
    c = y.shape[1] // 2
    return torch.complex(y[:, :c], y[:, c:])


@pytest.mark.parametrize(("h", "w"), SHAPES)
def test_rfft2_is_planar_ortho_rfft2_in_float64(h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    y = rfft2(x)
    assert y.shape == (2, 6, h, w // 2 + 1) and y.dtype == torch.float64
    torch.testing.assert_close(y, _planar(torch.fft.rfft2(x, norm="ortho")), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("h", "w"), SHAPES)
def test_irfft2_is_ortho_irfft2_of_the_planar_spectrum_in_float64(h, w):
    # an arbitrary (non-Hermitian) spectrum: the DC/Nyquist imaginary parts must be read
    # exactly as torch's irfft2 reads them
    y = torch.randn(2, 6, h, w // 2 + 1, dtype=torch.float64)
    want = torch.fft.irfft2(_complex(y), s=(h, w), norm="ortho")
    torch.testing.assert_close(irfft2(y, w), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("h", "w"), SHAPES)
def test_round_trip(h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    torch.testing.assert_close(irfft2(rfft2(x), w), x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lower_precision_inputs_compute_in_float32_and_keep_their_dtype(dtype):
    x = torch.randn(1, 4, 7, 10).to(dtype)
    y = rfft2(x)
    assert y.dtype == dtype
    want = _planar(torch.fft.rfft2(x.float(), norm="ortho"))
    torch.testing.assert_close(y.float(), want.to(dtype).float())
    back = irfft2(y, 10)
    assert back.dtype == dtype and back.shape == x.shape


@pytest.mark.parametrize(("h", "w"), [(5, 7), (4, 6), (3, 2), (1, 1), (2, 5)])
def test_gradcheck_both_ops(h, w):
    x = torch.randn(2, 2, h, w, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, h, w // 2 + 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rfft2, (x,))
    assert torch.autograd.gradcheck(lambda t: irfft2(t, w), (y,))
    assert torch.autograd.gradgradcheck(rfft2, (x,))
    assert torch.autograd.gradgradcheck(lambda t: irfft2(t, w), (y,))


def test_gradients_match_torch_fft_autograd():
    """The closed forms against torch's own FFT autograd on a non-trivial loss."""
    x = torch.randn(2, 3, 6, 9, dtype=torch.float64, requires_grad=True)
    mask = torch.randn(2, 6, 6, 5, dtype=torch.float64)

    def ours(t):
        return irfft2(rfft2(t) * mask, 9).square().sum()

    def ref(t):
        return torch.fft.irfft2(_complex(_planar(torch.fft.rfft2(t, norm="ortho")) * mask), s=(6, 9),
                                norm="ortho").square().sum()

    (g_ours,) = torch.autograd.grad(ours(x), x)
    (g_ref,) = torch.autograd.grad(ref(x), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("h", "w"), [(5, 4), (3, 7)])
def test_opcheck(h, w):
    x = torch.randn(2, 3, h, w, requires_grad=True)
    y = torch.randn(2, 6, h, w // 2 + 1, requires_grad=True)
    torch.library.opcheck(torch.ops.hyena.rfft2.default, (x,))
    torch.library.opcheck(torch.ops.hyena.irfft2.default, (y, w))


def test_ops_under_torch_compile_match_eager():
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    mask = torch.randn(6, 6, 4)

    def f(t):
        return torch.relu(irfft2(rfft2(t) * mask, 7))

    compiled = torch.compile(f, backend="eager", fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, f(x))
    (g_c,) = torch.autograd.grad(out.sum(), x)
    (g_e,) = torch.autograd.grad(f(x).sum(), x)
    torch.testing.assert_close(g_c, g_e)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rfft2(torch.randn(3, 4, 5)), r"\(B, C, H, W\)"),
        (lambda: rfft2(torch.ones(1, 1, 2, 2, dtype=torch.int64)), "float"),
        (lambda: irfft2(torch.randn(1, 3, 4, 3), 4), "planar"),
        (lambda: irfft2(torch.randn(1, 2, 4, 3), 6), "needs 4 spectrum columns"),
        (lambda: irfft2(torch.randn(1, 2, 4, 3), 0), "width 0"),
    ],
)
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.gpu
@pytest.mark.parametrize(("h", "w"), [(56, 56), (7, 7), (13, 10)])
def test_cuda_matches_cpu_float64_forward_and_backward(h, w):
    """The ops on a CUDA GPU (float32) against CPU float64, values and gradients."""
    x = torch.randn(2, 5, h, w, dtype=torch.float64)
    mask = torch.randn(10, h, w // 2 + 1, dtype=torch.float64)

    def run(t, m):
        t = t.clone().requires_grad_(True)
        y = irfft2(rfft2(t) * m, w)
        (g,) = torch.autograd.grad(y.square().sum(), t)
        return y.detach(), g

    want_y, want_g = run(x, mask)
    got_y, got_g = run(x.float().cuda(), mask.float().cuda())
    for got, want in ((got_y, want_y), (got_g, want_g)):
        assert got.dtype == torch.float32
        assert ((got.double().cpu() - want).abs().max() / want.abs().max()).item() <= 1e-5
