// hyena::RFFT2 / hyena::IRFFT2 -- CPU core of the two spectral-transform plugins.
//
// Pure C++17 (no TensorRT, no CUDA), built on the FFTConv core: the same Result/Status,
// field map, batch levels and workspace layout. A spectral transform is planned as an
// FFTConv Geometry with transform size = map size and no crop (rank 2, fftRows = H,
// fftCols = W), so the cuFFT plans, the work-area sizing and the [real | complex | cuFFT
// work] workspace of fftconv_core.h apply unchanged.
//
// The op contract (ONNX domain "hyena", plugin namespace "hyena", version "1"):
//   RFFT2(X) -> Y    X (N, C, H, W)          -> Y (N, 2C, H, W/2+1), planar:
//                    Y[:, c] = Re, Y[:, C+c] = Im of rfft2(X[:, c], norm="ortho")
//   IRFFT2(X) -> Y   X (N, 2C, H, W/2+1) planar -> Y (N, C, H, W) = irfft2(Re + i Im, s=(H, W),
//                    norm="ortho"); the imaginary parts of the DC column (and, for even W, the
//                    Nyquist column) are ignored, as irfft does.
//   field  spatial_size [H, W]: the real signal's size (IRFFT2 cannot recover an odd W
//          from W/2+1 otherwise). I/O float32 or float16, computed in float32.
#ifndef HYENA_SPECTRAL_CORE_H
#define HYENA_SPECTRAL_CORE_H

#include "fftconv_core.h"

#include <cstdint>
#include <vector>

namespace hyena
{
namespace fftconv
{

constexpr char const* kRfft2PluginName = "RFFT2";
constexpr char const* kIrfft2PluginName = "IRFFT2";
// Namespace and version: kPluginNamespace / kPluginVersion of fftconv_core.h.

enum class Direction : int32_t
{
    kForward = 0, //!< RFFT2
    kInverse = 1, //!< IRFFT2
};

char const* directionPluginName(Direction d) noexcept;

struct SpectralAttributes
{
    int32_t height{0}; //!< H of the real signal
    int32_t width{0};  //!< W of the real signal

    int64_t specCols() const noexcept { return width / 2 + 1; }
    bool operator==(SpectralAttributes const& o) const { return height == o.height && width == o.width; }
    bool operator!=(SpectralAttributes const& o) const { return !(*this == o); }
};

//! H, W in [1, kMaxFftLength] and H*W within int32 (cuFFT's plan limit).
Result validateSpectralAttributes(SpectralAttributes const& a);
//! From named fields: spatial_size [H, W] is required; unknown names are ignored.
Result parseSpectralAttributes(AttrMap const& fields, SpectralAttributes& out);

//! Input dims the transform expects for `batch`/`channels` (-1 passes through): RFFT2 takes
//! (N, C, H, W), IRFFT2 (N, 2C, H, W/2+1) with C the real channel count.
//! Checks X (rank 4, float32|float16, spatial dims as spatial_size says, an even channel
//! count for IRFFT2). Unknown (-1) dims are skipped.
Result checkSpectralInput(Direction dir, SpectralAttributes const& a, TensorInfo const& x);

//! Output dims from X's dims (-1 passes through, and a known channel count is doubled or
//! halved): RFFT2 (N, 2C, H, W/2+1), IRFFT2 (N, C/2, H, W).
Result spectralOutputShape(Direction dir, SpectralAttributes const& a, std::vector<int64_t> const& xDims,
    std::vector<int64_t>& out);

//! The transform as an FFTConv Geometry for concrete X dims: channels = the complex signal
//! count per image (C of the real tensor), rows/cols = fftRows/fftCols = (H, W), no crop,
//! scale = 1/sqrt(H*W) (ortho in both directions).
Result planSpectralGeometry(Direction dir, SpectralAttributes const& a, int64_t const xDims[4], Geometry& out);

// ---- element-index helpers (shared with the CUDA kernels and the CPU emulation) ------------------

//! RFFT2 unpack: planar output element -> (interleaved spectrum element, imaginary part?).
//! Output (N, 2C, H, S) with S = specCols; spectrum (N*C, H, S) complex.
template <typename I>
FFTCONV_HD I planarToSpectrum(Geometry const& g, I outIdx, bool& imag)
{
    I const plane = static_cast<I>(g.complexPerSignal());
    I const channels = static_cast<I>(g.channels);
    I const pix = outIdx % plane;
    I const t = outIdx / plane; // n * 2C + part
    I const part = t % (2 * channels);
    I const n = t / (2 * channels);
    imag = part >= channels;
    I const c = imag ? part - channels : part;
    return (n * channels + c) * plane + pix;
}

//! IRFFT2 pack: spectrum element -> the planar input elements of its real and imaginary parts.
template <typename I>
FFTCONV_HD void spectrumToPlanar(Geometry const& g, I specIdx, I& reIdx, I& imIdx)
{
    I const plane = static_cast<I>(g.complexPerSignal());
    I const channels = static_cast<I>(g.channels);
    I const pix = specIdx % plane;
    I const sig = specIdx / plane;
    I const n = sig / channels;
    I const c = sig % channels;
    reIdx = (n * 2 * channels + c) * plane + pix;
    imIdx = reIdx + channels * plane;
}

//! IRFFT2 pack: whether spectrum element specIdx lies in a column whose values irfft takes
//! as real along W (the DC column, and the Nyquist column for even W). There the pack uses the
//! Hermitian part along H, (v[i] + conj(v[(H-i) % H])) / 2, which gives cuFFT's C2R an exactly
//! Hermitian input and the same result as irfft's "ignore the imaginary part" -- see
//! mirrorRowOffset for the partner element.
template <typename I>
FFTCONV_HD bool isRealColumn(Geometry const& g, I specIdx)
{
    I const col = specIdx % static_cast<I>(g.specCols);
    return col == 0 || (g.fftCols % 2 == 0 && col == static_cast<I>(g.specCols) - 1);
}

//! Offset (in spectrum elements, may be negative) from specIdx to the element of the same
//! column in row (H - i) % H of the same signal.
template <typename I>
FFTCONV_HD I mirrorRowOffset(Geometry const& g, I specIdx)
{
    I const cols = static_cast<I>(g.specCols);
    I const rows = static_cast<I>(g.fftRows);
    I const row = (specIdx / cols) % rows;
    I const mirror = row == 0 ? 0 : rows - row;
    return (mirror - row) * cols;
}

} // namespace fftconv
} // namespace hyena

#endif // HYENA_SPECTRAL_CORE_H
