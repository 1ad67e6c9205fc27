"""Function bodies of ``hyena::RFFT2`` / ``hyena::IRFFT2`` (docs/design.md §4).

Both bodies compute exactly the op contract (planar orthonormal 2D real FFT, see
``hyena_serve.ops.spectral``) from the node's one input ``X`` into ``Y``, in float32, and
cast back to the dtype of the input. They are built with the FFTConv lowering's
:class:`~hyena_serve.exporting.lowering_common.BodyBuilder` and its DFT matrices
(``cis``: phases from integer products reduced mod N in float64; ``left_block``: a
complex matrix acting on rows stored (index, re/im) interleaved).

``matmul`` (fast): the W-axis real DFT is one right GEMM producing ``[re | im]`` column
blocks; reshaping those rows to (h, re/im) interleaved lets the H-axis complex DFT be left
GEMMs. The forward writes the real and the imaginary rows with two GEMMs (the two halves
of the same block matrix) and concatenates them on the channel axis, which *is* the
planar layout; the inverse reads the planar halves with two GEMMs whose sum is the
interleaved result, then one right GEMM does the half-spectrum-to-real W inverse with the
Hermitian weights folded in. The 1/√(H·W) of ``norm="ortho"`` is split between the two
axes' matrices: no elementwise pass besides the casts, the concatenation and one Add.

``dft`` (reference/fallback): ONNX ``DFT`` per axis, as written in the contract. ONNX
Runtime's CPU DFT is the slow path this op exists to avoid (docs/design.md §6).
"""

from __future__ import annotations

import math

import numpy as np

from hyena_serve.contract import ONNX_IRFFT2_TYPE, ONNX_RFFT2_TYPE
from hyena_serve.exporting.lowering_common import FLOAT, BodyBuilder, cis, left_block


def _herm_weights(width: int) -> np.ndarray:
    w = np.full(width // 2 + 1, 2.0)
    w[0] = 1.0
    if width % 2 == 0:
        w[-1] = 1.0
    return w


def forward_w_matrix(width: int) -> np.ndarray:
    """(W, 2M): x @ it = [Re | Im] of ``rfft(x, norm="ortho")`` along the last axis."""
    c, s = cis(np.arange(width)[:, None], np.arange(width // 2 + 1)[None, :], width)
    return np.concatenate([c, s], axis=1) / math.sqrt(width)


def inverse_w_matrix(width: int) -> np.ndarray:
    """(2M, W): [Re | Im] @ it = ``irfft(re + i·im, n=W, norm="ortho")``: Hermitian weights
    folded in, and no contribution from the imaginary parts of the DC and (even W) Nyquist
    columns, which irfft ignores (their sine row is exactly zero, not ~1e-16)."""
    m = width // 2 + 1
    c, s = cis(np.arange(m)[:, None], np.arange(width)[None, :], width, sign=+1.0)
    s[0] = 0.0
    if width % 2 == 0:
        s[-1] = 0.0
    wt = (_herm_weights(width) / math.sqrt(width))[:, None]
    return np.concatenate([c * wt, -s * wt], axis=0)


def h_matrix(height: int, sign: float) -> np.ndarray:
    """(2H, 2H): the orthonormal complex DFT along H (sign -1 forward, +1 inverse) acting
    on rows stored (h, re/im) interleaved, producing rows interleaved the same way."""
    c, s = cis(np.arange(height)[:, None], np.arange(height)[None, :], height, sign=sign)
    return left_block(c, s) / math.sqrt(height)


# -- matmul bodies ---------------------------------------------------------------------------

def rfft2_matmul(fb: BodyBuilder, height: int, width: int) -> None:
    m = width // 2 + 1
    x = fb.op("Cast", ["X"], to=FLOAT)                                           # (B,C,H,W)
    a = fb.matmul(x, fb.const(forward_w_matrix(width), "Rw"))                    # (B,C,H,2M)
    a = fb.reshape(a, [0, 0, 2 * height, m])                                     # rows (h, re/im)
    fh = h_matrix(height, -1.0)
    zr = fb.matmul(fb.const(fh[0::2], "Fh_re"), a)                               # (B,C,H,M)
    zi = fb.matmul(fb.const(fh[1::2], "Fh_im"), a)
    fb.finish(fb.op("Concat", [zr, zi], axis=1))                                 # (B,2C,H,M)


def irfft2_matmul(fb: BodyBuilder, height: int, width: int) -> None:
    m = width // 2 + 1
    y = fb.op("Cast", ["X"], to=FLOAT)                                           # (B,2C,H,M)
    yr, yi = fb.split2(y, axis=1)                                                # (B,C,H,M) each
    gh = h_matrix(height, +1.0)
    v = fb.op("Add", [fb.matmul(fb.const(gh[:, 0::2], "Gh_re"), yr),
                      fb.matmul(fb.const(gh[:, 1::2], "Gh_im"), yi)])            # (B,C,2H,M)
    v = fb.reshape(v, [0, 0, height, 2 * m])                                     # [re | im] per row
    fb.finish(fb.matmul(v, fb.const(inverse_w_matrix(width), "Rinv")))          # (B,C,H,W)


# -- DFT bodies ------------------------------------------------------------------------------

def rfft2_dft(fb: BodyBuilder, height: int, width: int) -> None:
    m = width // 2 + 1
    x = fb.op("Unsqueeze", [fb.op("Cast", ["X"], to=FLOAT), fb.ints([-1])])      # (B,C,H,W,1)
    z = fb.op("DFT", [x, fb.ints(width), fb.ints(3)], onesided=1)                # (B,C,H,M,2)
    z = fb.op("DFT", [z, fb.ints(height), fb.ints(2)])
    z = fb.op("Mul", [z, fb.const(1.0 / math.sqrt(height * width), "ortho")])
    z = fb.op("Transpose", [z], perm=[0, 4, 1, 2, 3])                            # (B,2,C,H,M)
    fb.finish(fb.reshape(z, [0, -1, height, m]))


def irfft2_dft(fb: BodyBuilder, height: int, width: int) -> None:
    m = width // 2 + 1
    y = fb.reshape(fb.op("Cast", ["X"], to=FLOAT), [0, 2, -1, height, m])        # (B,2,C,H,M)
    z = fb.op("Transpose", [y], perm=[0, 2, 3, 4, 1])                            # (B,C,H,M,2)
    z = fb.op("DFT", [z, fb.ints(height), fb.ints(2)], inverse=1)
    # The full Hermitian spectrum along W: columns M..W-1 are the conjugates of W-M..1.
    # The real part of its inverse DFT is irfft: Re(V_k e^{iθ}) at DC/Nyquist ignores Im.
    if width > m:
        tail = fb.op("Slice", [z, fb.ints([width - m]), fb.ints([0]), fb.ints([3]), fb.ints([-1])])
        z = fb.op("Concat", [z, fb.op("Mul", [tail, fb.const([1.0, -1.0], "conj")])], axis=3)
    z = fb.op("DFT", [z, fb.ints(width), fb.ints(3)], inverse=1)                 # (B,C,H,W,2)
    re = fb.op("Slice", [z, fb.ints([0]), fb.ints([1]), fb.ints([4])])
    re = fb.op("Mul", [re, fb.const(math.sqrt(height * width), "ortho")])        # ONNX inverse: 1/n
    fb.finish(fb.op("Squeeze", [re, fb.ints([4])]))


BODIES = {
    (ONNX_RFFT2_TYPE, "matmul"): rfft2_matmul,
    (ONNX_RFFT2_TYPE, "dft"): rfft2_dft,
    (ONNX_IRFFT2_TYPE, "matmul"): irfft2_matmul,
    (ONNX_IRFFT2_TYPE, "dft"): irfft2_dft,
}


def build_body(fb: BodyBuilder, op_type: str, height: int, width: int, body: str) -> None:
    """Append the nodes of ``op_type``'s ``body`` for an (H, W) real signal to ``fb``."""
    try:
        fn = BODIES[(op_type, body)]
    except KeyError:
        raise ValueError(f"no {body!r} body for {op_type!r}; expected one of {sorted(BODIES)}") from None
    fn(fb, height, width)
