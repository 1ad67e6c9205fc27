// CPU references for the FFTConv test programs (the core test and the GPU check): the
// filter half spectrum Kf, the direct convolution from the op's definition, a naive DFT
// emulation of the kernel pipeline, and the error measure. Plain C++17, host only, double
// precision; no TensorRT, no CUDA.
//
// Op definition (export/plugins/fftconv/README.md):
//   2d:          y[i,j] = sum_{p,q} k[i-p+Kh/2, j-q+Kw/2] x[p,q] + D x[i,j]
//   2d_circular: y[i,j] = sum_{p,q} k[(i-p) mod H, (j-q) mod W] x[p,q] + D x[i,j]
//   1d_bidir:    the (H, W) map flattened to L = H*W, y[l] = sum_p k[l-p+K/2] x[p] + D x[l]
// and the RFFT2 / IRFFT2 transforms (ortho-normalised, planar real | imaginary channels)
// straight from the DFT sums, plus emulations of their kernel pipelines.
#pragma once

#include "fftconv_core.h"
#include "spectral_core.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

namespace fftconv_ref
{

using cd = std::complex<double>;
using hyena::fftconv::Geometry;

//! exp(sign * 2*pi*i * m / n) for m = 0..n-1 (phases from exact integer products mod n).
inline std::vector<cd> twiddles(int64_t n, int sign)
{
    double const pi = std::acos(-1.0);
    std::vector<cd> t(static_cast<size_t>(n));
    for (int64_t m = 0; m < n; ++m)
    {
        double const ph = sign * 2.0 * pi * static_cast<double>(m) / static_cast<double>(n);
        t[static_cast<size_t>(m)] = cd(std::cos(ph), std::sin(ph));
    }
    return t;
}

//! Half spectrum (n0, n1/2+1) of a real (kr, kc) filter zero-padded to (n0, n1), like
//! torch.fft.rfftn / cufftExecR2C; separable, so O(kr*kc*h + n0*kr*h) per filter.
inline std::vector<cd> rfft2Padded(float const* k, int64_t kr, int64_t kc, int64_t n0, int64_t n1)
{
    int64_t const h = n1 / 2 + 1;
    std::vector<cd> const t1 = twiddles(n1, -1);
    std::vector<cd> const t0 = twiddles(n0, -1);
    std::vector<cd> rows(static_cast<size_t>(kr * h));
    for (int64_t r = 0; r < kr; ++r)
    {
        for (int64_t q = 0; q < h; ++q)
        {
            cd acc = 0;
            int64_t idx = 0; // (q * s) mod n1, stepped
            for (int64_t s = 0; s < kc; ++s)
            {
                acc += static_cast<double>(k[r * kc + s]) * t1[static_cast<size_t>(idx)];
                idx += q;
                idx = idx >= n1 ? idx - n1 : idx;
            }
            rows[static_cast<size_t>(r * h + q)] = acc;
        }
    }
    std::vector<cd> out(static_cast<size_t>(n0 * h));
    for (int64_t p = 0; p < n0; ++p)
    {
        for (int64_t q = 0; q < h; ++q)
        {
            cd acc = 0;
            for (int64_t r = 0; r < kr; ++r)
            {
                acc += rows[static_cast<size_t>(r * h + q)] * t0[static_cast<size_t>((p * r) % n0)];
            }
            out[static_cast<size_t>(p * h + q)] = acc;
        }
    }
    return out;
}

//! Kf for filters k of shape (channels, kr, kc): (channels, n0, n1/2+1, 2) float32,
//! real/imag interleaved (the op's input layout; 1d_bidir: kr = 1, n0 = 1).
inline std::vector<float> makeKf(
    std::vector<float> const& k, int64_t channels, int64_t kr, int64_t kc, int64_t n0, int64_t n1)
{
    std::vector<float> kf;
    kf.reserve(static_cast<size_t>(channels * n0 * (n1 / 2 + 1) * 2));
    for (int64_t c = 0; c < channels; ++c)
    {
        for (cd v : rfft2Padded(&k[static_cast<size_t>(c * kr * kc)], kr, kc, n0, n1))
        {
            kf.push_back(static_cast<float>(v.real()));
            kf.push_back(static_cast<float>(v.imag()));
        }
    }
    return kf;
}

//! Direct centred 2-D convolution of one (h, w) plane with one (kh, kw) filter, plus d*x.
inline void directConv2d(float const* x, float const* k, double d, int64_t h, int64_t w, int64_t kh, int64_t kw,
    double* y)
{
    for (int64_t i = 0; i < h; ++i)
    {
        for (int64_t j = 0; j < w; ++j)
        {
            double acc = d * x[i * w + j];
            // only taps inside the filter: p in [i+kh/2-kh+1, i+kh/2], q likewise
            int64_t const p0 = std::max<int64_t>(0, i + kh / 2 - kh + 1);
            int64_t const p1 = std::min<int64_t>(h - 1, i + kh / 2);
            int64_t const q0 = std::max<int64_t>(0, j + kw / 2 - kw + 1);
            int64_t const q1 = std::min<int64_t>(w - 1, j + kw / 2);
            for (int64_t p = p0; p <= p1; ++p)
            {
                float const* krow = k + (i - p + kh / 2) * kw;
                float const* xrow = x + p * w;
                for (int64_t q = q0; q <= q1; ++q)
                {
                    acc += static_cast<double>(krow[j - q + kw / 2]) * xrow[q];
                }
            }
            y[i * w + j] = acc;
        }
    }
}

//! Direct circular 2-D convolution of one (h, w) plane with one (h, w) filter, plus d*x.
inline void directCircularConv2d(float const* x, float const* k, double d, int64_t h, int64_t w, double* y)
{
    for (int64_t i = 0; i < h; ++i)
    {
        for (int64_t j = 0; j < w; ++j)
        {
            double acc = d * x[i * w + j];
            for (int64_t p = 0; p < h; ++p)
            {
                int64_t const r = (i - p + h) % h;
                for (int64_t q = 0; q < w; ++q)
                {
                    acc += static_cast<double>(k[r * w + (j - q + w) % w]) * x[p * w + q];
                }
            }
            y[i * w + j] = acc;
        }
    }
}

//! Direct centred 1-D convolution of one length-len signal with one length-kl filter, plus d*x.
inline void directConv1d(float const* x, float const* k, double d, int64_t len, int64_t kl, double* y)
{
    directConv2d(x, k, d, 1, len, 1, kl, y);
}

//! Largest absolute difference over the largest reference magnitude.
inline double maxRelError(std::vector<double> const& got, std::vector<double> const& want)
{
    double num = 0;
    double den = 0;
    for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    {
        num = std::max(num, std::fabs(got[i] - want[i]));
        den = std::max(den, std::fabs(want[i]));
    }
    return num / std::max(den, 1e-30);
}

// ---- naive-DFT emulation of the kernel pipeline (small sizes only) ---------------------------

//! Full complex DFT of an (n0, n1) array (sign -1 forward, +1 inverse, unnormalised).
inline std::vector<cd> dft2(std::vector<cd> const& in, int64_t n0, int64_t n1, int sign)
{
    std::vector<cd> const t0 = twiddles(n0, sign);
    std::vector<cd> const t1 = twiddles(n1, sign);
    std::vector<cd> out(static_cast<size_t>(n0 * n1));
    for (int64_t p = 0; p < n0; ++p)
    {
        for (int64_t q = 0; q < n1; ++q)
        {
            cd acc = 0;
            for (int64_t r = 0; r < n0; ++r)
            {
                for (int64_t s = 0; s < n1; ++s)
                {
                    acc += in[static_cast<size_t>(r * n1 + s)] * t0[static_cast<size_t>((p * r) % n0)]
                        * t1[static_cast<size_t>((q * s) % n1)];
                }
            }
            out[static_cast<size_t>(p * n1 + q)] = acc;
        }
    }
    return out;
}

//! R2C of one (n0, n1) real plane -> (n0, n1/2+1) half spectrum, like cufftExecR2C.
inline std::vector<cd> r2c(float const* plane, int64_t n0, int64_t n1)
{
    std::vector<cd> in(static_cast<size_t>(n0 * n1));
    for (size_t i = 0; i < in.size(); ++i)
    {
        in[i] = plane[i];
    }
    std::vector<cd> const full = dft2(in, n0, n1, -1);
    int64_t const h = n1 / 2 + 1;
    std::vector<cd> half(static_cast<size_t>(n0 * h));
    for (int64_t p = 0; p < n0; ++p)
    {
        for (int64_t q = 0; q < h; ++q)
        {
            half[static_cast<size_t>(p * h + q)] = full[static_cast<size_t>(p * n1 + q)];
        }
    }
    return half;
}

//! C2R (unnormalised, Hermitian completion) like cufftExecC2R.
inline std::vector<double> c2r(cd const* half, int64_t n0, int64_t n1)
{
    int64_t const h = n1 / 2 + 1;
    std::vector<cd> full(static_cast<size_t>(n0 * n1));
    for (int64_t p = 0; p < n0; ++p)
    {
        for (int64_t q = 0; q < n1; ++q)
        {
            full[static_cast<size_t>(p * n1 + q)]
                = q < h ? half[p * h + q] : std::conj(half[((n0 - p) % n0) * h + (n1 - q)]);
        }
    }
    std::vector<cd> const t = dft2(full, n0, n1, +1);
    std::vector<double> out(t.size());
    for (size_t i = 0; i < t.size(); ++i)
    {
        out[i] = t[i].real();
    }
    return out;
}

//! Emulates pad kernel -> R2C -> multiply kernel -> C2R -> crop kernel for all signals,
//! with the element-index helpers of fftconv_core.h that the CUDA kernels use.
inline std::vector<double> emulatePipeline(
    Geometry const& g, std::vector<float> const& x, std::vector<float> const& kf, std::vector<float> const& d)
{
    using namespace hyena::fftconv;
    std::vector<float> real(static_cast<size_t>(g.signals() * g.realPerSignal()), -7.0f); // pad writes everything
    for (int64_t i = 0; i < g.signals() * g.realPerSignal(); ++i)
    {
        int64_t src = 0;
        real[static_cast<size_t>(i)] = padSourceIndex(g, i, src) ? x[static_cast<size_t>(src)] : 0.0f;
    }
    std::vector<cd> spec(static_cast<size_t>(g.signals() * g.complexPerSignal()));
    for (int64_t s = 0; s < g.signals(); ++s)
    {
        std::vector<cd> const h = r2c(&real[static_cast<size_t>(s * g.realPerSignal())], g.fftRows, g.fftCols);
        std::copy(h.begin(), h.end(), spec.begin() + s * g.complexPerSignal());
    }
    for (int64_t i = 0; i < static_cast<int64_t>(spec.size()); ++i)
    {
        int64_t const f = filterIndex(g, i);
        cd const k(kf[static_cast<size_t>(2 * f)], kf[static_cast<size_t>(2 * f + 1)]);
        spec[static_cast<size_t>(i)] *= k * static_cast<double>(g.scale);
    }
    std::vector<double> inv(static_cast<size_t>(g.signals() * g.realPerSignal()));
    for (int64_t s = 0; s < g.signals(); ++s)
    {
        std::vector<double> const r = c2r(&spec[static_cast<size_t>(s * g.complexPerSignal())], g.fftRows, g.fftCols);
        std::copy(r.begin(), r.end(), inv.begin() + s * g.realPerSignal());
    }
    std::vector<double> y(static_cast<size_t>(g.signals() * g.outPerSignal()));
    for (int64_t i = 0; i < static_cast<int64_t>(y.size()); ++i)
    {
        y[static_cast<size_t>(i)] = inv[static_cast<size_t>(cropSourceIndex(g, i))]
            + static_cast<double>(d[static_cast<size_t>(channelOf(g, i))]) * x[static_cast<size_t>(i)];
    }
    return y;
}

// ---- RFFT2 / IRFFT2 ----------------------------------------------------------------------------

//! Ortho rfft2 of one (h, w) real plane from the definition:
//! Y[p, q] = (h*w)^-1/2 * sum_{r,s} x[r, s] exp(-2 pi i (p r / h + q s / w)), q < w/2+1.
inline std::vector<cd> rfft2Ortho(float const* x, int64_t h, int64_t w)
{
    int64_t const half = w / 2 + 1;
    std::vector<cd> const t0 = twiddles(h, -1);
    std::vector<cd> const t1 = twiddles(w, -1);
    double const s = 1.0 / std::sqrt(static_cast<double>(h * w));
    std::vector<cd> out(static_cast<size_t>(h * half));
    for (int64_t p = 0; p < h; ++p)
    {
        for (int64_t q = 0; q < half; ++q)
        {
            cd acc = 0;
            for (int64_t r = 0; r < h; ++r)
            {
                for (int64_t c = 0; c < w; ++c)
                {
                    acc += static_cast<double>(x[r * w + c]) * t0[static_cast<size_t>((p * r) % h)]
                        * t1[static_cast<size_t>((q * c) % w)];
                }
            }
            out[static_cast<size_t>(p * half + q)] = acc * s;
        }
    }
    return out;
}

//! Ortho irfft2 with s = (h, w) as torch.fft.irfft2 / numpy define it: a complex inverse DFT
//! along H, then along W the real inverse of a half spectrum z (length w/2+1), which takes
//! Re z[0] (and Re z[w/2] for even w) and counts the other bins twice:
//!   y[c] = Re z[0] + 2 sum_{0<q<(w+1)/2} Re(z[q] e^{2 pi i q c / w}) + [w even] Re z[w/2] (-1)^c.
//! Written this way (not via Hermitian completion) so it checks the kernels' approach
//! independently.
inline std::vector<double> irfft2Ortho(cd const* spec, int64_t h, int64_t w)
{
    int64_t const half = w / 2 + 1;
    std::vector<cd> const t0 = twiddles(h, +1);
    std::vector<cd> const t1 = twiddles(w, +1);
    double const s = 1.0 / std::sqrt(static_cast<double>(h * w));
    std::vector<cd> colInv(static_cast<size_t>(h * half));
    for (int64_t r = 0; r < h; ++r)
    {
        for (int64_t q = 0; q < half; ++q)
        {
            cd acc = 0;
            for (int64_t p = 0; p < h; ++p)
            {
                acc += spec[p * half + q] * t0[static_cast<size_t>((p * r) % h)];
            }
            colInv[static_cast<size_t>(r * half + q)] = acc;
        }
    }
    std::vector<double> out(static_cast<size_t>(h * w));
    for (int64_t r = 0; r < h; ++r)
    {
        cd const* z = &colInv[static_cast<size_t>(r * half)];
        for (int64_t c = 0; c < w; ++c)
        {
            double acc = z[0].real();
            for (int64_t q = 1; 2 * q < w; ++q)
            {
                acc += 2.0 * (z[q] * t1[static_cast<size_t>((q * c) % w)]).real();
            }
            if (w % 2 == 0)
            {
                acc += z[w / 2].real() * ((c % 2) ? -1.0 : 1.0);
            }
            out[static_cast<size_t>(r * w + c)] = acc * s;
        }
    }
    return out;
}

//! Emulates the RFFT2 kernels (cast, R2C, unpack to planar * scale) with the index helpers of
//! spectral_core.h: x (N, C, H, W) -> planar (N, 2C, H, W/2+1).
inline std::vector<double> emulateRfft2(Geometry const& g, std::vector<float> const& x)
{
    using namespace hyena::fftconv;
    std::vector<float> real(static_cast<size_t>(g.signals() * g.realPerSignal()), -7.0f);
    for (int64_t i = 0; i < g.signals() * g.realPerSignal(); ++i)
    {
        int64_t src = 0;
        real[static_cast<size_t>(i)] = padSourceIndex(g, i, src) ? x[static_cast<size_t>(src)] : 0.0f;
    }
    std::vector<cd> spec(static_cast<size_t>(g.signals() * g.complexPerSignal()));
    for (int64_t s = 0; s < g.signals(); ++s)
    {
        std::vector<cd> const h = r2c(&real[static_cast<size_t>(s * g.realPerSignal())], g.fftRows, g.fftCols);
        std::copy(h.begin(), h.end(), spec.begin() + s * g.complexPerSignal());
    }
    std::vector<double> y(static_cast<size_t>(g.signals() * 2 * g.complexPerSignal()));
    for (int64_t o = 0; o < static_cast<int64_t>(y.size()); ++o)
    {
        bool imag = false;
        cd const v = spec[static_cast<size_t>(planarToSpectrum(g, o, imag))];
        y[static_cast<size_t>(o)] = (imag ? v.imag() : v.real()) * static_cast<double>(g.scale);
    }
    return y;
}

//! Emulates the IRFFT2 kernels (pack with the Hermitian part of the real columns, C2R with
//! Hermitian completion, cast) with the index helpers: planar (N, 2C, H, W/2+1) -> (N, C, H, W).
inline std::vector<double> emulateIrfft2(Geometry const& g, std::vector<float> const& x)
{
    using namespace hyena::fftconv;
    std::vector<cd> spec(static_cast<size_t>(g.signals() * g.complexPerSignal()));
    for (int64_t i = 0; i < static_cast<int64_t>(spec.size()); ++i)
    {
        int64_t re = 0;
        int64_t im = 0;
        spectrumToPlanar(g, i, re, im);
        double vr = x[static_cast<size_t>(re)];
        double vi = x[static_cast<size_t>(im)];
        if (isRealColumn(g, i))
        {
            int64_t mre = 0;
            int64_t mim = 0;
            spectrumToPlanar(g, i + mirrorRowOffset(g, i), mre, mim);
            vr = 0.5 * (vr + x[static_cast<size_t>(mre)]);
            vi = 0.5 * (vi - x[static_cast<size_t>(mim)]);
        }
        spec[static_cast<size_t>(i)] = cd(vr, vi) * static_cast<double>(g.scale);
    }
    std::vector<double> y(static_cast<size_t>(g.signals() * g.realPerSignal()));
    for (int64_t s = 0; s < g.signals(); ++s)
    {
        std::vector<double> const r = c2r(&spec[static_cast<size_t>(s * g.complexPerSignal())], g.fftRows, g.fftCols);
        std::copy(r.begin(), r.end(), y.begin() + s * g.realPerSignal());
    }
    return y;
}

//! Reference RFFT2 of a batch: x (n, c, h, w) -> planar (n, 2c, h, w/2+1), from rfft2Ortho.
inline std::vector<double> referenceRfft2(std::vector<float> const& x, int64_t n, int64_t c, int64_t h, int64_t w)
{
    int64_t const plane = h * (w / 2 + 1);
    std::vector<double> y(static_cast<size_t>(n * 2 * c * plane));
    for (int64_t b = 0; b < n; ++b)
    {
        for (int64_t ch = 0; ch < c; ++ch)
        {
            std::vector<cd> const s = rfft2Ortho(&x[static_cast<size_t>((b * c + ch) * h * w)], h, w);
            for (int64_t i = 0; i < plane; ++i)
            {
                y[static_cast<size_t>((b * 2 * c + ch) * plane + i)] = s[static_cast<size_t>(i)].real();
                y[static_cast<size_t>((b * 2 * c + c + ch) * plane + i)] = s[static_cast<size_t>(i)].imag();
            }
        }
    }
    return y;
}

//! Reference IRFFT2 of a batch: planar x (n, 2c, h, w/2+1) -> (n, c, h, w), from irfft2Ortho.
inline std::vector<double> referenceIrfft2(std::vector<float> const& x, int64_t n, int64_t c, int64_t h, int64_t w)
{
    int64_t const plane = h * (w / 2 + 1);
    std::vector<double> y(static_cast<size_t>(n * c * h * w));
    std::vector<cd> spec(static_cast<size_t>(plane));
    for (int64_t b = 0; b < n; ++b)
    {
        for (int64_t ch = 0; ch < c; ++ch)
        {
            for (int64_t i = 0; i < plane; ++i)
            {
                spec[static_cast<size_t>(i)] = cd(x[static_cast<size_t>((b * 2 * c + ch) * plane + i)],
                    x[static_cast<size_t>((b * 2 * c + c + ch) * plane + i)]);
            }
            std::vector<double> const r = irfft2Ortho(spec.data(), h, w);
            std::copy(r.begin(), r.end(), y.begin() + (b * c + ch) * h * w);
        }
    }
    return y;
}

} // namespace fftconv_ref
