"""The plain FFTConv function body: ONNX ``DFT`` ops (``--body dft``).

Kept for comparison and as the fallback for plans the GEMM lowering does not factorise
(a long prime-ish FFT size). It follows docs/design.md §2 literally: forward real DFT of the
zero-padded signal, complex DFT along the other axis (2d), multiply by Kf (with the skip
folded in as D at the centre tap), inverse, crop. The circular mode is the 2d body with
the plan's crop start 0 and N = the map size: no padding, no crop. ONNX Runtime's CPU DFT is slow
(docs/design.md §6): this body is 50-100× slower than torch's FFT.
"""

from __future__ import annotations

import numpy as np

from hyena_serve.contract import MODES_2D, FFTPlan
from hyena_serve.exporting.lowering_common import FLOAT, BodyBuilder, cis_frac


def _complex_mul(fb: BodyBuilder, z: str, k: str) -> str:
    zr, zi = fb.split2(z, axis=-1)
    kr, ki = fb.split2(k, axis=-1)
    re = fb.op("Sub", [fb.op("Mul", [zr, kr]), fb.op("Mul", [zi, ki])])
    im = fb.op("Add", [fb.op("Mul", [zr, ki]), fb.op("Mul", [zi, kr])])
    return fb.op("Concat", [re, im], axis=-1)


def _c2r_last(fb: BodyBuilder, z: str, axis: int, n: int) -> str:
    """Inverse real DFT along ``axis`` of a half spectrum (…, n//2+1, …, 2): rebuild the
    full Hermitian spectrum, inverse complex DFT, real part (keeps the trailing 1)."""
    m = n // 2 + 1
    tail = fb.op("Slice", [z, fb.ints([n - m]), fb.ints([0]), fb.ints([axis]), fb.ints([-1])])
    tail = fb.op("Mul", [tail, fb.const([1.0, -1.0], "conj")])
    full = fb.op("Concat", [z, tail], axis=axis)
    y = fb.op("DFT", [full, fb.ints(n), fb.ints(axis)], inverse=1)
    return fb.op("Slice", [y, fb.ints([0]), fb.ints([1]), fb.ints([-1])])


def build_body(fb: BodyBuilder, plan: FFTPlan, channels: int) -> str:
    x = fb.op("Cast", ["X"], to=FLOAT)
    if plan.mode in MODES_2D:
        (h, w), (ch, cw), (nh, nw) = plan.spatial, plan.crop_start, plan.fft
        mw = nw // 2 + 1
        frac = np.mod(np.mod(ch * np.arange(nh), nh)[:, None] / nh + np.mod(cw * np.arange(mw), nw)[None, :] / nw, 1.0)
        pc, ps = cis_frac(frac)
        kt = fb.op("Add", ["Kf", fb.op("Mul", [fb.reshape("D", [-1, 1, 1, 1]),
                                               fb.const(np.stack([pc, ps], -1), "centre")])])
        xs = fb.op("Unsqueeze", [x, fb.ints([-1])])                                  # (B,C,H,W,1)
        z = fb.op("DFT", [xs, fb.ints(nw), fb.ints(3)], onesided=1)                  # (B,C,H,Mw,2)
        z = fb.op("DFT", [z, fb.ints(nh), fb.ints(2)])                               # (B,C,Nh,Mw,2)
        z = _complex_mul(fb, z, kt)
        z = fb.op("DFT", [z, fb.ints(nh), fb.ints(2)], inverse=1)
        z = fb.op("Slice", [z, fb.ints([ch]), fb.ints([ch + h]), fb.ints([2])])
        y = _c2r_last(fb, z, 3, nw)                                                  # (B,C,H,Nw,1)
        y = fb.op("Slice", [y, fb.ints([cw]), fb.ints([cw + w]), fb.ints([3])])
        fb.finish(fb.op("Reshape", [y, fb.op("Shape", ["X"])]))
        return "dft"
    (length,), (k,), (n,) = plan.spatial, plan.kernel, plan.fft
    c = k // 2
    m = n // 2 + 1
    pc, ps = cis_frac(np.mod(c * np.arange(m), n) / n)
    kt = fb.op("Add", ["Kf", fb.op("Mul", [fb.reshape("D", [-1, 1, 1]), fb.const(np.stack([pc, ps], -1), "centre")])])
    xs = fb.reshape(x, [0, 0, length, 1])
    z = fb.op("DFT", [xs, fb.ints(n), fb.ints(2)], onesided=1)                       # (B,C,M,2)
    z = _complex_mul(fb, z, kt)
    y = _c2r_last(fb, z, 2, n)                                                       # (B,C,N,1)
    y = fb.op("Slice", [y, fb.ints([c]), fb.ints([c + length]), fb.ints([2])])
    fb.finish(fb.op("Reshape", [y, fb.op("Shape", ["X"])]))
    return "dft"
