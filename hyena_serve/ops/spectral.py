"""``torch.ops.hyena.rfft2`` / ``torch.ops.hyena.irfft2``: the 2D real FFT pair as custom ops.

The AFF mixer computes its spectrum at run time, so the transforms themselves must be
exportable ops (one ONNX node each, with fast function bodies and TensorRT plugins,
docs/design.md §4). The spectrum is a real tensor in a *planar* layout:

- ``rfft2(x)``: x (B, C, H, W) → (B, 2C, H, W//2+1); channels [0, C) hold the real parts
  and [C, 2C) the imaginary parts of ``torch.fft.rfft2(x, norm="ortho")``.
- ``irfft2(y, width)``: y (B, 2C, H, W//2+1) → (B, C, H, width), equal to
  ``torch.fft.irfft2(complex(y[:, :C], y[:, C:]), s=(H, width), norm="ortho")``. Like
  ``irfft`` it reads only the real part of the H-inverse-transformed DC column (and of the
  Nyquist column for even ``width``).

Both compute in float32 (float64 for float64 input) and return the input dtype. Autograd
is closed form (derivation in :func:`_rfft2_backward` / :func:`_irfft2_backward`) and
written with the ops themselves, so double backward and ``torch.compile`` work too.
"""

from __future__ import annotations

import torch

from hyena_serve.contract import TORCH_IRFFT2_NAME, TORCH_OP_NAMESPACE, TORCH_RFFT2_NAME
from hyena_serve.ops.spectrum import working_dtype

_RFFT2 = f"{TORCH_OP_NAMESPACE}::{TORCH_RFFT2_NAME}"
_IRFFT2 = f"{TORCH_OP_NAMESPACE}::{TORCH_IRFFT2_NAME}"


def half_width(width: int) -> int:
    """Columns of the half spectrum of a width-``width`` real signal."""
    return width // 2 + 1


def hermitian_weights(width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(W//2+1,): how often each half-spectrum column counts in the full spectrum: 1 for DC
    (and Nyquist when ``width`` is even), 2 for every other column."""
    w = torch.full((half_width(width),), 2.0, dtype=dtype, device=device)
    w[0] = 1.0
    if width % 2 == 0:
        w[-1] = 1.0
    return w


def _check_signal(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"rfft2: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"rfft2: x must be a float tensor, got {x.dtype}")


def _check_spectrum(y: torch.Tensor, width: int) -> None:
    if y.dim() != 4 or y.shape[1] % 2:
        raise ValueError(f"irfft2: y must be a planar spectrum (B, 2C, H, W//2+1), got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        raise ValueError(f"irfft2: y must be a float tensor, got {y.dtype}")
    if width < 1 or half_width(width) != y.shape[-1]:
        raise ValueError(f"irfft2: width {width} needs {half_width(max(width, 1))} spectrum columns, "
                         f"y has {y.shape[-1]}")


def to_complex(y: torch.Tensor) -> torch.Tensor:
    """Planar (B, 2C, ...) → complex (B, C, ...)."""
    re, im = y.chunk(2, dim=1)
    return torch.complex(re, im)


def to_planar(z: torch.Tensor) -> torch.Tensor:
    """Complex (B, C, ...) → planar (B, 2C, ...)."""
    return torch.cat([z.real, z.imag], dim=1)


@torch.library.custom_op(_RFFT2, mutates_args=())
def rfft2(x: torch.Tensor) -> torch.Tensor:
    """Planar ``rfft2(x, norm="ortho")``: (B, C, H, W) → (B, 2C, H, W//2+1)."""
    _check_signal(x)
    z = torch.fft.rfft2(x.to(working_dtype(x.dtype)), norm="ortho")
    return to_planar(z).to(x.dtype)


@rfft2.register_fake
def _(x):
    b, c, h, w = x.shape
    return x.new_empty(b, 2 * c, h, half_width(w))


@torch.library.custom_op(_IRFFT2, mutates_args=())
def irfft2(y: torch.Tensor, width: int) -> torch.Tensor:
    """Planar ``irfft2(·, s=(H, width), norm="ortho")``: (B, 2C, H, width//2+1) → (B, C, H, width)."""
    _check_spectrum(y, width)
    z = to_complex(y.to(working_dtype(y.dtype)))
    return torch.fft.irfft2(z, s=(y.shape[-2], width), norm="ortho").to(y.dtype)


@irfft2.register_fake
def _(y, width):
    b, c2, h, _ = y.shape
    return y.new_empty(b, c2 // 2, h, width)


# -- autograd ----------------------------------------------------------------------------------
#
# Notation: one channel, signal x (H, W) real, half spectrum Z (H, M), M = W//2+1, and
# w (M,) the Hermitian weights (1 at DC and, for even W, Nyquist; 2 elsewhere). Both ops
# are real-linear maps between real vector spaces (the spectrum counted as its real and
# imaginary parts, which is exactly the planar layout), so each gradient is the adjoint
# map applied to the incoming gradient, with the inner product <A, B> = Re Σ conj(A)·B.
#
# Factor the transforms per axis: rfft2 = F_H ∘ R_W and irfft2 = F_H^{-1}-then-C_W, where
# R_W is the real-to-half-spectrum DFT along W, F_H the full complex DFT along H (unitary
# with norm="ortho", so its adjoint is its inverse) and C_W the half-spectrum-to-real
# inverse along W. Per row, with θ = 2π k n / W:
#
#   R_W(x)_k = (1/√W) Σ_n x_n e^{-iθ},        k < M
#   C_W(V)_n = (1/√W) Σ_k w_k Re(V_k e^{+iθ})            (irfft: Im V_0, Im V_Nyq unused)
#
# Adjoint of R_W: <R_W x, G> = Σ_n x_n (1/√W) Σ_k Re(G_k e^{+iθ}), i.e. the real part of an
# inverse DFT of G zero-padded to W columns. That is C_W(G / w): dividing by w undoes the
# double counting C_W applies to the non-DC/Nyquist columns, and C_W reading only Re at DC
# and Nyquist matches Re(G_k e^{iθ}) there (θ = 0 or πn). So
#
#   rfft2ᵀ(G) = R_Wᵀ(F_H^{-1} G) = C_W(F_H^{-1}(G / w)) = irfft2(G / w)      (w commutes with F_H)
#
# Adjoint of C_W: ∂C_W(V)_n/∂Re V_k = w_k cos θ / √W, ∂/∂Im V_k = -w_k sin θ / √W, so the
# gradient with respect to V_k is (w_k/√W) Σ_n g_n e^{-iθ} = w_k R_W(g)_k (its imaginary
# part vanishes at DC and Nyquist, where sin θ = 0, as it must for unused inputs). So
#
#   irfft2ᵀ(g) = F_H(C_Wᵀ g) = F_H(w · R_W(g)) = w · rfft2(g).
#
# The adjoints are the other op up to the weights, not the plain inverse: rfft2 is not
# orthogonal onto the planar space (each interior column stands for two of the full
# spectrum). Written with the ops themselves, the backward is differentiable again.


def _rfft2_setup(ctx, inputs, output):
    (x,) = inputs
    ctx.width = x.shape[-1]


def _rfft2_backward(ctx, grad):
    w = hermitian_weights(ctx.width, grad.dtype, grad.device)
    return irfft2(grad / w, ctx.width)


def _irfft2_setup(ctx, inputs, output):
    _, width = inputs
    ctx.width = width


def _irfft2_backward(ctx, grad):
    w = hermitian_weights(ctx.width, grad.dtype, grad.device)
    return rfft2(grad) * w, None


rfft2.register_autograd(_rfft2_backward, setup_context=_rfft2_setup)
irfft2.register_autograd(_irfft2_backward, setup_context=_irfft2_setup)
