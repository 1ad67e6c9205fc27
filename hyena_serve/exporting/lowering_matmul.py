"""Fast FFTConv function bodies: the FFT convolution as GEMMs (and direct Conv where cheaper).

Every body computes exactly ``crop(irfftn(rfftn(x, N) · (Kf + D·δ_centre)))`` of the op
contract (docs/design.md §2/§4) from the node's inputs ``X``, ``Kf``, ``D``; the crop offset
and the centre tap are the plan's ``crop_start`` (``k//2`` in the linear modes, 0 in the
circular mode, where ``N`` = the map size and nothing is padded or cropped). All the work on
``Kf``/``D`` alone (re-layout, folding the skip and the crop into the spectrum, recovering
the spatial taps) is written as nodes that depend only on the initializers, so ONNX
Runtime constant-folds it at session creation; per inference only the data path runs.

Strategies (chosen per plan by :func:`choose_strategy`):

``dense2d``  2D: W-direction real DFT of the W non-zero columns (right GEMM), H-direction
             complex DFT of the H non-zero rows (left GEMM, complex as interleaved rows),
             ×Kf, inverse-H producing only the H kept rows (crop + 1/Nh folded), inverse
             real W producing only the W kept columns (crop, 1/Nw, Hermitian weights folded).
``split2d``  dense2d with the H-direction spectrum as separate real and imaginary
             tensors (two GEMMs each way, the spectrum multiply on half-size tensors
             without the re/im swap copy): the same GEMM work, ~40% less elementwise
             traffic; the default 2D body above the Conv threshold.
``ct1d``     1D, long sequences: two-level Cooley–Tukey N = N1·N2 over the (N1, N2) view of
             the sequence. The crop shift is folded into the spectrum (a phase) so both
             the input and the output occupy only the first rows of that view; Hermitian
             symmetry of the real signal lets every stage keep only k1 ≤ N1/2.
``ct1ds``    ct1d with the complex intermediates as separate real/imaginary tensors (as
             split2d): no re/im swap copies; the default for long sequences.
``dense1d``  1D, short sequences: one real DFT GEMM each way.
``conv``     depthwise ``Conv`` with the taps that can reach the output (recovered from Kf
             at session creation); fastest for small maps (e.g. Hpx at 7×7). Linear
             modes only: a circular filter wraps around the map, which a zero-padded
             Conv does not do, so the circular mode always gets ``split2d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hyena_serve.contract import MODE_2D, FFTPlan
from hyena_serve.exporting.lowering_common import FLOAT, BodyBuilder, cis, cis_frac, left_block, right_block

STRATEGIES = ("split2d", "dense2d", "ct1ds", "ct1d", "dense1d", "conv")


def _herm_weights(n: int, half: int) -> np.ndarray:
    w = np.full(half, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


# -- strategy choice -----------------------------------------------------------------------

#: Strategy thresholds, from bench/onnx_vs_torch.py --part ops --all-strategies (1 thread,
#: B=1 and 8, medians, ratio ORT/torch): 2d 7×7 K=13: conv 0.17-0.20 vs dense2d 0.75-0.84;
#: 2d 14×14 K=27: dense2d 0.36-0.50 vs conv 0.50-0.53; 1d L=49: dense1d 0.56-0.64 vs
#: conv 3.3-4.1; 1d L=196 (N=392): dense1d 1.2-1.7 vs ct1d 1.5-2.6; 1d L=784 (N=1568):
#: ct1d 1.7-2.1 vs dense1d 5.1. Conv for 2d when (output pixels × taps) per channel is
#: small; never for 1d (ORT's long 1D depthwise Conv is slow). split2d over dense2d
#: (same bench, --all-strategies, 1 thread, best of 18-30 calls interleaved): 64×56² B=1
#: 6.4 vs 7.2 ms, 128×28² 1.73 vs 2.01 (B=8: 19.8 vs 26.4), 320×14² 1.07 vs 1.13 (B=8:
#: 8.7 vs 10.4); at 7×7 both lose to conv (0.69 / 0.62 vs 0.14). ct1ds over ct1d: 128×784
#: B=1 1.21 vs 1.38 ms (B=8, 2 threads: 22 vs 32), 64×3136 a tie (3.5-4.3 ms either).
CONV_MAX_MACS_2D = 64 * 169
CONV_MAX_MACS_1D = 0
DENSE1D_MAX_N = 512


def conv_taps(n: int, k: int) -> tuple[int, int]:
    """Inclusive range of filter taps that reach an output of a length-``n`` signal."""
    c = k // 2
    return max(0, c - (n - 1)), min(k - 1, c + n - 1)


def choose_strategy(plan: FFTPlan) -> str:
    if plan.circular:
        return "split2d"
    if plan.mode == MODE_2D:
        (h, w), (kh, kw) = plan.spatial, plan.kernel
        th0, th1 = conv_taps(h, kh)
        tw0, tw1 = conv_taps(w, kw)
        if h * w * (th1 - th0 + 1) * (tw1 - tw0 + 1) <= CONV_MAX_MACS_2D:
            return "conv"
        return "split2d"
    (n,), (k,), (nfft,) = plan.spatial, plan.kernel, plan.fft
    t0, t1 = conv_taps(n, k)
    if n * (t1 - t0 + 1) <= CONV_MAX_MACS_1D:  # disabled (measured slower)
        return "conv"
    if nfft <= DENSE1D_MAX_N:
        return "dense1d"
    return "ct1ds"


@dataclass(frozen=True)
class CTFactors:
    n1: int
    n2: int
    rows: int  # rows of the (n1, n2) view holding the input (and the kept output)
    half: int  # k1 rows kept: n1 // 2 + 1

    @property
    def flops(self) -> int:
        # per channel and sample: stage 1 + 7 (left GEMMs), stage 3 + 5 (right GEMMs),
        # plus ~3 elementwise complex passes weighted as GEMM work.
        left = 2 * (2 * self.half * self.rows * self.n2 * 2)
        right = 2 * (self.half * 2 * self.n2 * 2 * self.n2 * 2)
        elementwise = 3 * 8 * self.half * self.n2 * 4
        return left + right + elementwise


def ct_factors(length: int, nfft: int) -> CTFactors:
    """The N1·N2 = nfft split with the least work (N1 ≥ 2, N2 ≥ 2)."""
    best = None
    for n1 in range(2, nfft // 2 + 1):
        if nfft % n1:
            continue
        n2 = nfft // n1
        f = CTFactors(n1, n2, math.ceil(length / n2), n1 // 2 + 1)
        if f.rows > n1:
            continue
        if best is None or f.flops < best.flops:
            best = f
    if best is None or best.n2 > 1024 or best.n1 > 4096:
        raise ValueError(f"no usable two-level factorisation of N={nfft} (L={length}); use the DFT body")
    return best


def supports(plan: FFTPlan) -> bool:
    """Whether the matmul lowering handles ``plan`` (a prime-ish long N does not)."""
    try:
        if choose_strategy(plan) in ("ct1d", "ct1ds"):
            ct_factors(plan.spatial[0], plan.fft[0])
        return True
    except ValueError:
        return False


# -- bodies ----------------------------------------------------------------------------------

def build_body(fb: BodyBuilder, plan: FFTPlan, channels: int, strategy: str | None = None) -> str:
    """Append the nodes of the body for ``plan`` to ``fb``; returns the strategy used."""
    strategy = strategy or choose_strategy(plan)
    if strategy == "dense2d":
        _dense2d(fb, plan)
    elif strategy == "ct1d":
        _ct1d(fb, plan)
    elif strategy == "ct1ds":
        _ct1ds(fb, plan)
    elif strategy == "dense1d":
        _dense1d(fb, plan)
    elif strategy == "split2d":
        _split2d(fb, plan)
    elif strategy == "conv":
        _conv(fb, plan, channels)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    return strategy


def _forward_w(fb: BodyBuilder, plan: FFTPlan, x: str) -> str:
    """Forward real DFT along W of the W non-zero columns, as [re | im] blocks, rows
    regrouped (h, re/im): (B,C,H,W) -> (B,C,2H,Mw)."""
    (h, w), (nw,) = plan.spatial, plan.fft[1:]
    mw = nw // 2 + 1
    c, s = cis(np.arange(w)[:, None], np.arange(mw)[None, :], nw)
    a = fb.matmul(x, fb.const(np.concatenate([c, s], axis=1), "Rw"))           # (B,C,H,2Mw)
    return fb.reshape(a, [0, 0, 2 * h, mw])


def _centred_spectrum(fb: BodyBuilder, plan: FFTPlan) -> str:
    """Kf plus D at the centre tap (the crop shift folds D into the spectrum): (C,Nh,Mw,2).
    In circular mode the crop start is 0: D is added to every bin."""
    (ch, cw), (nh, nw) = plan.crop_start, plan.fft
    mw = nw // 2 + 1
    frac = (np.mod(ch * np.arange(nh), nh)[:, None] / nh) + (np.mod(cw * np.arange(mw), nw)[None, :] / nw)
    pc, ps = cis_frac(np.mod(frac, 1.0))
    phase = fb.const(np.stack([pc, ps], axis=-1), "centre")                     # (Nh,Mw,2)
    return fb.op("Add", ["Kf", fb.op("Mul", [fb.reshape("D", [-1, 1, 1, 1]), phase])])


def _inverse_w(fb: BodyBuilder, plan: FFTPlan, v: str) -> str:
    """Inverse real DFT along W of [re | im] blocks, only the kept columns, Hermitian
    weights and 1/Nw folded: (B,C,H,2Mw) -> (B,C,H,W)."""
    (_, w), (_, cw), (_, nw) = plan.spatial, plan.crop_start, plan.fft
    mw = nw // 2 + 1
    c, s = cis(np.arange(mw)[:, None], cw + np.arange(w)[None, :], nw, sign=+1.0)
    wt = (_herm_weights(nw, mw) / nw)[:, None]
    return fb.matmul(v, fb.const(np.concatenate([c * wt, -s * wt], axis=0), "Rinv"))


def _dense2d(fb: BodyBuilder, plan: FFTPlan) -> None:
    (h, _), (ch, _), (nh, nw) = plan.spatial, plan.crop_start, plan.fft
    mw = nw // 2 + 1
    x = fb.op("Cast", ["X"], to=FLOAT)

    a = _forward_w(fb, plan, x)                                                 # (B,C,2H,Mw)
    # forward H (complex), only the H non-zero rows
    c, s = cis(np.arange(nh)[:, None], np.arange(h)[None, :], nh)
    z = fb.matmul(fb.const(left_block(c, s), "Fh"), a)                          # (B,C,2Nh,Mw)
    z = fb.reshape(z, [0, 0, nh, 2, mw])

    # spectrum: Kf + D at the centre tap, laid out (C, Nh, 2, Mw)
    kt = fb.op("Transpose", [_centred_spectrum(fb, plan)], perm=[0, 1, 3, 2])  # (C,Nh,2,Mw)
    kr, ki = fb.split2(kt, axis=2)
    ka = fb.op("Concat", [kr, kr], axis=2)
    kb = fb.op("Concat", [fb.op("Neg", [ki]), ki], axis=2)
    y = fb.cmul_swap(z, 3, ka, kb)                                              # (B,C,Nh,2,Mw)

    # inverse H, only the kept rows ch..ch+H-1, 1/Nh folded
    c, s = cis(ch + np.arange(h)[:, None], np.arange(nh)[None, :], nh, sign=+1.0)
    v = fb.matmul(fb.const(left_block(c / nh, s / nh), "Gh"), fb.reshape(y, [0, 0, 2 * nh, mw]))
    v = fb.reshape(v, [0, 0, h, 2 * mw])                                        # [re | im]
    fb.finish(_inverse_w(fb, plan, v))                                          # (B,C,H,W)


def _split2d(fb: BodyBuilder, plan: FFTPlan) -> None:
    """dense2d with the H-direction spectrum kept as separate real and imaginary tensors:
    the forward H GEMM is two GEMMs (real rows, imaginary rows of the same matrix), the
    spectrum multiply is four Muls and two Adds on half-size tensors with no re/im swap
    copy, and the inverse H GEMM takes the real and imaginary parts as two GEMMs whose sum
    is the interleaved result (same GEMM work as dense2d, ~40% less elementwise traffic)."""
    (h, _), (ch, _), (nh, nw) = plan.spatial, plan.crop_start, plan.fft
    mw = nw // 2 + 1
    x = fb.op("Cast", ["X"], to=FLOAT)

    a = _forward_w(fb, plan, x)                                                 # (B,C,2H,Mw)
    c, s = cis(np.arange(nh)[:, None], np.arange(h)[None, :], nh)
    fh = left_block(c, s)                                                       # (2Nh, 2H)
    zr = fb.matmul(fb.const(fh[0::2], "Fh_re"), a)                              # (B,C,Nh,Mw)
    zi = fb.matmul(fb.const(fh[1::2], "Fh_im"), a)

    kr, ki = fb.split2(_centred_spectrum(fb, plan), axis=3)
    last = fb.ints([3])
    kr, ki = fb.op("Squeeze", [kr, last]), fb.op("Squeeze", [ki, last])         # (C,Nh,Mw)
    yr = fb.op("Sub", [fb.op("Mul", [zr, kr]), fb.op("Mul", [zi, ki])])
    yi = fb.op("Add", [fb.op("Mul", [zr, ki]), fb.op("Mul", [zi, kr])])

    c, s = cis(ch + np.arange(h)[:, None], np.arange(nh)[None, :], nh, sign=+1.0)
    gh = left_block(c / nh, s / nh)                                             # (2H, 2Nh)
    v = fb.op("Add", [fb.matmul(fb.const(gh[:, 0::2], "Gh_re"), yr),
                      fb.matmul(fb.const(gh[:, 1::2], "Gh_im"), yi)])           # (B,C,2H,Mw)
    v = fb.reshape(v, [0, 0, h, 2 * mw])
    fb.finish(_inverse_w(fb, plan, v))                                          # (B,C,H,W)


def _shifted_full_spectrum_1d(fb: BodyBuilder, plan: FFTPlan, k_index: np.ndarray) -> tuple[str, str]:
    """Kf at full-spectrum bins ``k_index`` (any shape S), times exp(+2πi·k·c/N) (the
    crop shift), plus D (the skip, which the shift puts at tap 0); returns (re, im) each
    shaped (C, *S)."""
    (n,), (k,) = plan.fft, plan.kernel
    c = k // 2
    idx = np.minimum(k_index, n - k_index)
    sign = np.where(k_index <= n // 2, 1.0, -1.0)
    kg = fb.op("Gather", ["Kf", fb.const(idx, "bins", dtype=np.int64)], axis=1)  # (C,*S,2)
    kr, ki = fb.split2(kg, axis=-1)
    squeeze_axes = fb.ints([-1])
    kr = fb.op("Squeeze", [kr, squeeze_axes])
    ki = fb.op("Mul", [fb.op("Squeeze", [ki, squeeze_axes]), fb.const(sign, "conj")])
    pc, ps = cis(k_index, c, n, sign=+1.0)
    pc, ps = fb.const(pc, "shift_re"), fb.const(ps, "shift_im")
    re = fb.op("Sub", [fb.op("Mul", [kr, pc]), fb.op("Mul", [ki, ps])])
    im = fb.op("Add", [fb.op("Mul", [kr, ps]), fb.op("Mul", [ki, pc])])
    extra_dims = [1] * k_index.ndim
    re = fb.op("Add", [re, fb.reshape("D", [-1, *extra_dims])])
    return re, im


def _ct_rows(fb: BodyBuilder, plan: FFTPlan, factors: CTFactors | None) -> tuple[CTFactors, str]:
    """The two-level 1D bodies' input: X cast to float32, zero-padded to rows·N2 samples and
    laid out (B, C, rows, N2), with the factorisation it follows."""
    (length,), (nfft,) = plan.spatial, plan.fft
    f = factors or ct_factors(length, nfft)
    x = fb.reshape(fb.op("Cast", ["X"], to=FLOAT), [0, 0, length])
    if f.rows * f.n2 > length:
        x = fb.op("Pad", [x, fb.ints([0, 0, 0, 0, 0, f.rows * f.n2 - length])])
    return f, fb.reshape(x, [0, 0, f.rows, f.n2])


def _ct1d(fb: BodyBuilder, plan: FFTPlan, factors: CTFactors | None = None) -> None:
    (length,), (nfft,) = plan.spatial, plan.fft
    f, x = _ct_rows(fb, plan, factors)
    n1, n2, rows, half = f.n1, f.n2, f.rows, f.half

    k1 = np.arange(half)
    # stage 1: DFT over n1 (only the `rows` non-zero rows), k1 <= N1/2; rows (k1, re/im)
    c, s = cis(k1[:, None], np.arange(rows)[None, :], n1)
    f1 = np.empty((2 * half, rows))
    f1[0::2], f1[1::2] = c, s
    p = fb.matmul(fb.const(f1, "F1"), x)                                         # (B,C,2h,N2)
    p = fb.reshape(p, [0, 0, half, 2, n2])
    # stage 2: twiddle exp(-2πi n2 k1 / N)
    tc, ts = cis(k1[:, None], np.arange(n2)[None, :], nfft)
    q = fb.cmul_swap(p, 3, fb.const(np.stack([tc, tc], 1), "twA"), fb.const(np.stack([-ts, ts], 1), "twB"))
    # stage 3: DFT over n2 (right GEMM on [re | im] rows)
    c, s = cis(np.arange(n2)[:, None], np.arange(n2)[None, :], n2)
    z = fb.matmul(fb.reshape(q, [0, 0, half, 2 * n2]), fb.const(right_block(c, s), "F2"))
    z = fb.reshape(z, [0, 0, half, 2, n2])

    # spectrum at bins k = k1 + N1·k2, crop shift and skip folded
    kidx = k1[:, None] + n1 * np.arange(n2)[None, :]
    kre, kim = _shifted_full_spectrum_1d(fb, plan, kidx)                        # (C,h,N2)
    kre = fb.op("Unsqueeze", [kre, fb.ints([2])])
    kim = fb.op("Unsqueeze", [kim, fb.ints([2])])
    ka = fb.op("Concat", [kre, kre], axis=2)
    kb = fb.op("Concat", [fb.op("Neg", [kim]), kim], axis=2)
    y = fb.cmul_swap(z, 3, ka, kb)                                              # (B,C,h,2,N2)

    # stage 5: inverse DFT over k2 (right GEMM)
    c, s = cis(np.arange(n2)[:, None], np.arange(n2)[None, :], n2, sign=+1.0)
    u = fb.matmul(fb.reshape(y, [0, 0, half, 2 * n2]), fb.const(right_block(c, s), "G2"))
    u = fb.reshape(u, [0, 0, half, 2, n2])
    # stage 6: twiddle exp(+2πi n2 k1 / N)
    tc, ts = cis(k1[:, None], np.arange(n2)[None, :], nfft, sign=+1.0)
    u = fb.cmul_swap(u, 3, fb.const(np.stack([tc, tc], 1), "itwA"), fb.const(np.stack([-ts, ts], 1), "itwB"))
    # stage 7: real part of the inverse over k1, only the kept rows; weights and 1/N folded
    c, s = cis(np.arange(rows)[:, None], k1[None, :], n1, sign=+1.0)
    wt = _herm_weights(n1, half)[None, :] / nfft
    g1 = np.empty((rows, 2 * half))
    g1[:, 0::2], g1[:, 1::2] = c * wt, -s * wt
    out = fb.matmul(fb.const(g1, "G1"), fb.reshape(u, [0, 0, 2 * half, n2]))   # (B,C,rows,N2)
    out = fb.reshape(out, [0, 0, rows * n2])
    if rows * n2 > length:
        out = fb.op("Slice", [out, fb.ints([0]), fb.ints([length]), fb.ints([2])])
    fb.finish(fb.op("Reshape", [out, fb.op("Shape", ["X"])]))


def _ct1ds(fb: BodyBuilder, plan: FFTPlan, factors: CTFactors | None = None) -> None:
    """ct1d with every complex intermediate as separate real and imaginary tensors: the
    left GEMMs over N1 are two GEMMs (real rows, imaginary rows), the twiddles and the
    spectrum are four Muls and two Adds on half-size tensors (no re/im swap copy), and each
    N2 DFT is one Concat [re | im] and two right GEMMs."""
    (length,), (nfft,) = plan.spatial, plan.fft
    f, x = _ct_rows(fb, plan, factors)
    n1, n2, rows, half = f.n1, f.n2, f.rows, f.half

    def cmul(re, im, wr, wi):
        return (fb.op("Sub", [fb.op("Mul", [re, wr]), fb.op("Mul", [im, wi])]),
                fb.op("Add", [fb.op("Mul", [re, wi]), fb.op("Mul", [im, wr])]))

    def dft_n2(re, im, sign, hint):
        c, s = cis(np.arange(n2)[:, None], np.arange(n2)[None, :], n2, sign=sign)
        q = fb.op("Concat", [re, im], axis=3)                                   # (B,C,h,2N2)
        return (fb.matmul(q, fb.const(np.concatenate([c, -s], axis=0), hint + "_re")),
                fb.matmul(q, fb.const(np.concatenate([s, c], axis=0), hint + "_im")))

    k1 = np.arange(half)
    c, s = cis(k1[:, None], np.arange(rows)[None, :], n1)
    pr, pi = fb.matmul(fb.const(c, "F1_re"), x), fb.matmul(fb.const(s, "F1_im"), x)  # (B,C,h,N2)
    tc, ts = cis(k1[:, None], np.arange(n2)[None, :], nfft)
    zr, zi = dft_n2(*cmul(pr, pi, fb.const(tc, "tw_re"), fb.const(ts, "tw_im")), -1.0, "F2")

    kidx = k1[:, None] + n1 * np.arange(n2)[None, :]
    kre, kim = _shifted_full_spectrum_1d(fb, plan, kidx)                        # (C,h,N2)
    ur, ui = dft_n2(*cmul(zr, zi, kre, kim), +1.0, "G2")
    tc, ts = cis(k1[:, None], np.arange(n2)[None, :], nfft, sign=+1.0)
    vr, vi = cmul(ur, ui, fb.const(tc, "itw_re"), fb.const(ts, "itw_im"))
    c, s = cis(np.arange(rows)[:, None], k1[None, :], n1, sign=+1.0)
    wt = _herm_weights(n1, half)[None, :] / nfft
    out = fb.op("Add", [fb.matmul(fb.const(c * wt, "G1_re"), vr),
                        fb.matmul(fb.const(-s * wt, "G1_im"), vi)])              # (B,C,rows,N2)
    out = fb.reshape(out, [0, 0, rows * n2])
    if rows * n2 > length:
        out = fb.op("Slice", [out, fb.ints([0]), fb.ints([length]), fb.ints([2])])
    fb.finish(fb.op("Reshape", [out, fb.op("Shape", ["X"])]))


def _dense1d(fb: BodyBuilder, plan: FFTPlan) -> None:
    (length,), (nfft,) = plan.spatial, plan.fft
    m = nfft // 2 + 1
    x = fb.reshape(fb.op("Cast", ["X"], to=FLOAT), [0, 0, 1, length])
    c, s = cis(np.arange(length)[:, None], np.arange(m)[None, :], nfft)
    z = fb.matmul(x, fb.const(np.concatenate([c, s], axis=1), "F"))            # (B,C,1,2M)
    z = fb.reshape(z, [0, 0, 2, m])
    kre, kim = _shifted_full_spectrum_1d(fb, plan, np.arange(m))               # (C,M)
    kre = fb.op("Unsqueeze", [kre, fb.ints([1])])
    kim = fb.op("Unsqueeze", [kim, fb.ints([1])])
    ka = fb.op("Concat", [kre, kre], axis=1)
    kb = fb.op("Concat", [fb.op("Neg", [kim]), kim], axis=1)
    y = fb.reshape(fb.cmul_swap(z, 2, ka, kb), [0, 0, 1, 2 * m])
    c, s = cis(np.arange(m)[:, None], np.arange(length)[None, :], nfft, sign=+1.0)
    wt = (_herm_weights(nfft, m) / nfft)[:, None]
    out = fb.matmul(y, fb.const(np.concatenate([c * wt, -s * wt], axis=0), "G"))
    fb.finish(fb.op("Reshape", [out, fb.op("Shape", ["X"])]))


def _conv(fb: BodyBuilder, plan: FFTPlan, channels: int) -> None:
    """Depthwise Conv with the flipped taps that reach the output (from Kf, folded)."""
    if plan.circular:
        raise ValueError("the conv strategy computes a linear convolution; a circular plan needs split2d or dense2d")
    if plan.mode == MODE_2D:
        (h, w), (kh, kw), (nh, nw) = plan.spatial, plan.kernel, plan.fft
        (th0, th1), (tw0, tw1) = conv_taps(h, kh), conv_taps(w, kw)
        rows = np.arange(th1, th0 - 1, -1)          # flipped tap order
        cols = np.arange(tw1, tw0 - 1, -1)
        mw = nw // 2 + 1
        kt = fb.reshape(fb.op("Transpose", ["Kf"], perm=[0, 1, 3, 2]), [0, 2 * nh, mw])  # (C,2Nh,Mw)
        c, s = cis(rows[:, None], np.arange(nh)[None, :], nh, sign=+1.0)
        t = fb.matmul(fb.const(left_block(c / nh, s / nh), "Gh"), kt)          # (C,2Th,Mw)
        t = fb.reshape(t, [0, len(rows), 2 * mw])
        c, s = cis(np.arange(mw)[:, None], cols[None, :], nw, sign=+1.0)
        wt = (_herm_weights(nw, mw) / nw)[:, None]
        taps = fb.matmul(t, fb.const(np.concatenate([c * wt, -s * wt], axis=0), "Rinv"))  # (C,Th,Tw)
        ph, pw = th1 - kh // 2, tw1 - kw // 2
        onehot = np.zeros((len(rows), len(cols)))
        onehot[ph, pw] = 1.0
        taps = fb.op("Add", [taps, fb.op("Mul", [fb.reshape("D", [-1, 1, 1]), fb.const(onehot, "centre")])])
        weight = fb.reshape(taps, [-1, 1, len(rows), len(cols)])
        x = fb.op("Cast", ["X"], to=FLOAT)
        out = fb.op("Conv", [x, weight], group=channels,
                    pads=[ph, pw, len(rows) - 1 - ph, len(cols) - 1 - pw])
        fb.finish(out)
        return
    (length,), (k,), (nfft,) = plan.spatial, plan.kernel, plan.fft
    t0, t1 = conv_taps(length, k)
    taps_idx = np.arange(t1, t0 - 1, -1)
    m = nfft // 2 + 1
    kt = fb.reshape(fb.op("Transpose", ["Kf"], perm=[0, 2, 1]), [0, 2 * m])  # (C, [re|im])
    c, s = cis(np.arange(m)[:, None], taps_idx[None, :], nfft, sign=+1.0)
    wt = (_herm_weights(nfft, m) / nfft)[:, None]
    taps = fb.matmul(kt, fb.const(np.concatenate([c * wt, -s * wt], axis=0), "Ginv"))  # (C,T)
    p = t1 - k // 2
    onehot = np.zeros(len(taps_idx))
    onehot[p] = 1.0
    taps = fb.op("Add", [taps, fb.op("Mul", [fb.reshape("D", [-1, 1]), fb.const(onehot, "centre")])])
    weight = fb.reshape(taps, [-1, 1, len(taps_idx)])
    x = fb.reshape(fb.op("Cast", ["X"], to=FLOAT), [0, 0, length])
    out = fb.op("Conv", [x, weight], group=channels, pads=[p, len(taps_idx) - 1 - p])
    fb.finish(fb.op("Reshape", [out, fb.op("Shape", ["X"])]))
