// hyena::RFFT2 / hyena::IRFFT2 CUDA kernels and cuFFT sequence: see spectral_kernels.cuh.
//
// RFFT2 per enqueue (caller's stream, scratch in the TensorRT workspace):
//   1. cast:   X (fp32|fp16) -> fp32 planes (N*C, H, W)  (launchPadCast with fft = map: a copy)
//   2. cufftExecR2C per batch chunk -> interleaved half spectra (N*C, H, W/2+1)
//   3. unpack: Y[n, c] = Re * s, Y[n, C+c] = Im * s, s = 1/sqrt(H*W), stored as X's dtype
// IRFFT2 per enqueue:
//   1. pack:   planar X -> interleaved spectra * s; in the DC (and even-W Nyquist) column the
//              Hermitian part along H, so C2R sees an exactly Hermitian input
//   2. cufftExecC2R per batch chunk -> fp32 planes (N*C, H, W)
//   3. cast:   Y = planes, stored as X's dtype
// Index math: spectral_core.h (shared with the CPU emulation in the core test).
#include "fftconv_cuda_util.cuh"
#include "spectral_kernels.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace hyena
{
namespace fftconv
{
using namespace cudautil;

namespace
{

template <typename T, typename I>
__global__ void unpackPlanarKernel(Geometry const g, float2 const* __restrict__ spec, T* __restrict__ y, I const total)
{
    I const stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
    float const s = g.scale;
    for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < total;
         i += stride)
    {
        bool imag = false;
        float2 const v = spec[planarToSpectrum<I>(g, i, imag)];
        y[i] = storeAs<T>((imag ? v.y : v.x) * s);
    }
}

template <typename T, typename I>
__global__ void packPlanarKernel(Geometry const g, T const* __restrict__ x, float2* __restrict__ spec, I const total)
{
    I const stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
    float const s = g.scale;
    for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < total;
         i += stride)
    {
        I re = 0;
        I im = 0;
        spectrumToPlanar<I>(g, i, re, im);
        float vr = loadAsFloat(x[re]);
        float vi = loadAsFloat(x[im]);
        if (isRealColumn<I>(g, i))
        {
            // Hermitian part along H: irfft2 takes these columns as real after the H inverse.
            I const m = mirrorRowOffset<I>(g, i);
            I mre = 0;
            I mim = 0;
            spectrumToPlanar<I>(g, i + m, mre, mim);
            vr = 0.5f * (vr + loadAsFloat(x[mre]));
            vi = 0.5f * (vi - loadAsFloat(x[mim]));
        }
        spec[i] = make_float2(vr * s, vi * s);
    }
}

template <typename T, typename I>
__global__ void castOutKernel(float const* __restrict__ real, T* __restrict__ y, I const total)
{
    I const stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
    for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < total;
         i += stride)
    {
        y[i] = storeAs<T>(real[i]);
    }
}

//! Spectral geometries: transform = map, no crop, rank 2.
bool spectralSane(Geometry const& g) noexcept
{
    return geometrySane(g) && g.rank == 2 && g.fftRows == g.rows && g.fftCols == g.cols && g.cropRow == 0
        && g.cropCol == 0;
}

} // namespace

int32_t planDirections(Direction dir) noexcept
{
    return dir == Direction::kForward ? kPlanR2C : kPlanC2R;
}

KernelResult launchUnpackPlanar(Geometry const& g, IoType io, float const* spectrum, void* y, cudaStream_t stream) noexcept
{
    if (spectrum == nullptr || y == nullptr || !spectralSane(g))
    {
        return invalid("launchUnpackPlanar");
    }
    int64_t const total = g.signals() * 2 * g.complexPerSignal();
    auto const* s2 = reinterpret_cast<float2 const*>(spectrum);
    return launchElementwise(g, io, total, "unpackPlanarKernel", [&](auto t, auto i) {
        using T = decltype(t);
        using I = decltype(i);
        unpackPlanarKernel<T, I><<<gridFor(total), kBlock, 0, stream>>>(
            g, s2, static_cast<T*>(y), static_cast<I>(total));
    });
}

KernelResult launchPackPlanar(Geometry const& g, IoType io, void const* x, float* spectrum, cudaStream_t stream) noexcept
{
    if (x == nullptr || spectrum == nullptr || !spectralSane(g))
    {
        return invalid("launchPackPlanar");
    }
    int64_t const total = g.signals() * g.complexPerSignal();
    auto* s2 = reinterpret_cast<float2*>(spectrum);
    return launchElementwise(g, io, total, "packPlanarKernel", [&](auto t, auto i) {
        using T = decltype(t);
        using I = decltype(i);
        packPlanarKernel<T, I><<<gridFor(total), kBlock, 0, stream>>>(
            g, static_cast<T const*>(x), s2, static_cast<I>(total));
    });
}

KernelResult launchCastOut(Geometry const& g, IoType io, float const* real, void* y, cudaStream_t stream) noexcept
{
    if (real == nullptr || y == nullptr || !spectralSane(g))
    {
        return invalid("launchCastOut");
    }
    int64_t const total = g.signals() * g.realPerSignal();
    return launchElementwise(g, io, total, "castOutKernel", [&](auto t, auto i) {
        using T = decltype(t);
        using I = decltype(i);
        castOutKernel<T, I><<<gridFor(total), kBlock, 0, stream>>>(real, static_cast<T*>(y), static_cast<I>(total));
    });
}

KernelResult runSpectral(SpectralLaunchArgs const& a, FftPlans const& plans, cudaStream_t stream) noexcept
{
    Geometry const& g = a.geom;
    if (!spectralSane(g))
    {
        return invalid("runSpectral: geometry");
    }
    if (g.signals() == 0)
    {
        return ok();
    }
    if (a.x == nullptr || a.y == nullptr || a.workspace == nullptr)
    {
        return invalid("runSpectral: null pointer");
    }
    bool const forward = a.dir == Direction::kForward;
    Scratch w;
    KernelResult r = carveWorkspace(g, plans, planDirections(a.dir), a.workspace, a.workspaceBytes,
        "runSpectral: cuFFT plans missing, stale or of the other direction (onShapeChange not called?)",
        "runSpectral: workspace too small for this batch and its cuFFT work area, or misaligned", w);
    if (r.ok())
    {
        r = forward ? launchPadCast(g, a.io, a.x, w.real, stream)
                    : launchPackPlanar(g, a.io, a.x, reinterpret_cast<float*>(w.spec), stream);
    }
    if (r.ok())
    {
        r = execBatchChunks(g, plans, forward, w.real, w.spec, w.work, stream);
    }
    if (!r.ok())
    {
        return r;
    }
    return forward ? launchUnpackPlanar(g, a.io, reinterpret_cast<float const*>(w.spec), a.y, stream)
                   : launchCastOut(g, a.io, w.real, a.y, stream);
}

} // namespace fftconv
} // namespace hyena
