// hyena::FFTConv CUDA kernels and cuFFT sequence: see fftconv_kernels.cuh.
//
// Pipeline per enqueue (all on the caller's stream, scratch in the TensorRT workspace):
//   1. pad+cast:  X (fp32|fp16) -> zero-padded fp32 planes (N*C, fftRows, fftCols)
//   2. cufftExecR2C per batch chunk (2^k images each) -> half spectra (N*C, fftRows, specCols)
//   3. multiply:  spectrum *= Kf[c] / (fftRows*fftCols)   (Kf broadcast over the batch)
//   4. cufftExecC2R per batch chunk (out of place back into the real buffer)
//   5. crop+skip+cast: Y = real[crop window] + D[c] * X, stored as X's dtype
// The index math lives in fftconv_core.h (shared with the CPU emulation in the tests).
// cuFFT plans: one R2C/C2R pair per power-of-two batch level, made outside enqueue with
// auto-allocation off; their common work area is the last slice of the workspace.
#include "fftconv_kernels.cuh"
#include "fftconv_cuda_util.cuh"

#include <cuda_fp16.h>

#include <atomic>
#include <climits>
#include <cstdint>

namespace hyena
{
namespace fftconv
{
using namespace cudautil;

namespace
{

// I: the index type, int32_t when kernelIndexFits32(g) (cheaper division), else int64_t.
template <typename T, typename I>
__global__ void padCastKernel(Geometry const g, T const* __restrict__ x, float* __restrict__ real, I const total)
{
    I const stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
    for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < total;
         i += stride)
    {
        I src = 0;
        real[i] = padSourceIndex<I>(g, i, src) ? loadAsFloat(x[src]) : 0.0f;
    }
}

template <typename I>
__global__ void spectrumMultiplyKernel(
    Geometry const g, float2 const* __restrict__ kf, float2* __restrict__ spec, I const total)
{
    I const stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
    float const s = g.scale;
    for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < total;
         i += stride)
    {
        float2 const a = spec[i];
        float2 const b = kf[filterIndex<I>(g, i)];
        spec[i] = make_float2((a.x * b.x - a.y * b.y) * s, (a.x * b.y + a.y * b.x) * s);
    }
}

template <typename T, typename I>
__global__ void cropSkipCastKernel(Geometry const g, float const* __restrict__ real, T const* __restrict__ x,
    float const* __restrict__ d, T* __restrict__ y, I const total)
{
    I const stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
    for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < total;
         i += stride)
    {
        float const conv = real[cropSourceIndex<I>(g, i)];
        y[i] = storeAs<T>(conv + d[channelOf<I>(g, i)] * loadAsFloat(x[i]));
    }
}

} // namespace

bool geometrySane(Geometry const& g) noexcept
{
    return (g.rank == 1 || g.rank == 2) && g.batch >= 0 && g.channels > 0 && g.rows > 0 && g.cols > 0
        && g.fftRows >= g.rows + g.cropRow && g.fftCols >= g.cols + g.cropCol && g.specCols == g.fftCols / 2 + 1
        && g.cropRow >= 0 && g.cropCol >= 0 && (g.rank == 2 || g.fftRows == 1);
}

char const* kernelStatusName(KernelStatus s) noexcept
{
    switch (s)
    {
    case KernelStatus::kOk: return "ok";
    case KernelStatus::kInvalidArgument: return "invalid argument";
    case KernelStatus::kCudaError: return "CUDA error";
    case KernelStatus::kCufftError: return "cuFFT error";
    }
    return "unknown";
}

KernelResult launchPadCast(Geometry const& g, IoType io, void const* x, float* real, cudaStream_t stream) noexcept
{
    if (x == nullptr || real == nullptr || !geometrySane(g))
    {
        return invalid("launchPadCast");
    }
    int64_t const total = g.signals() * g.realPerSignal();
    return launchElementwise(g, io, total, "padCastKernel", [&](auto t, auto i) {
        using T = decltype(t);
        using I = decltype(i);
        padCastKernel<T, I><<<gridFor(total), kBlock, 0, stream>>>(
            g, static_cast<T const*>(x), real, static_cast<I>(total));
    });
}

KernelResult launchSpectrumMultiply(Geometry const& g, float const* kf, float* spectrum, cudaStream_t stream) noexcept
{
    if (kf == nullptr || spectrum == nullptr || !geometrySane(g))
    {
        return invalid("launchSpectrumMultiply");
    }
    int64_t const total = g.signals() * g.complexPerSignal();
    if (total == 0)
    {
        return ok();
    }
    auto const* k2 = reinterpret_cast<float2 const*>(kf);
    auto* s2 = reinterpret_cast<float2*>(spectrum);
    if (kernelIndexFits32(g))
    {
        spectrumMultiplyKernel<int32_t><<<gridFor(total), kBlock, 0, stream>>>(g, k2, s2, static_cast<int32_t>(total));
    }
    else
    {
        spectrumMultiplyKernel<int64_t><<<gridFor(total), kBlock, 0, stream>>>(g, k2, s2, total);
    }
    return lastLaunch("spectrumMultiplyKernel");
}

KernelResult launchCropSkipCast(Geometry const& g, IoType io, float const* real, void const* x, float const* d,
    void* y, cudaStream_t stream) noexcept
{
    if (real == nullptr || x == nullptr || d == nullptr || y == nullptr || !geometrySane(g))
    {
        return invalid("launchCropSkipCast");
    }
    int64_t const total = g.signals() * g.outPerSignal();
    return launchElementwise(g, io, total, "cropSkipCastKernel", [&](auto t, auto i) {
        using T = decltype(t);
        using I = decltype(i);
        cropSkipCastKernel<T, I><<<gridFor(total), kBlock, 0, stream>>>(
            g, real, static_cast<T const*>(x), d, static_cast<T*>(y), static_cast<I>(total));
    });
}

namespace
{

std::atomic<int64_t> gPlansCreated{0};

// FFT lengths and per-signal distances of geometry g for cufft*Many (n has rank entries).
void planShape(Geometry const& g, int n[2], int& realDist, int& complexDist) noexcept
{
    if (g.rank == 2)
    {
        n[0] = static_cast<int>(g.fftRows);
        n[1] = static_cast<int>(g.fftCols);
    }
    else
    {
        n[0] = static_cast<int>(g.fftCols);
        n[1] = 0;
    }
    realDist = static_cast<int>(g.realPerSignal());
    complexDist = static_cast<int>(g.complexPerSignal());
}

// One plan: create, auto-allocation off, make (contiguous batches: inembed/onembed =
// nullptr selects the basic layout with unit stride and the given distances).
KernelResult makeOnePlan(Geometry const& g, cufftType type, int batchSignals, cufftHandle& out, size_t& workBytes)
{
    int n[2];
    int realDist = 0;
    int complexDist = 0;
    planShape(g, n, realDist, complexDist);
    int const idist = type == CUFFT_R2C ? realDist : complexDist;
    int const odist = type == CUFFT_R2C ? complexDist : realDist;
    cufftHandle h = 0;
    KernelResult r = cufftCheck(cufftCreate(&h), "cufftCreate");
    if (!r.ok())
    {
        return r;
    }
    r = cufftCheck(cufftSetAutoAllocation(h, 0), "cufftSetAutoAllocation");
    if (r.ok())
    {
        workBytes = 0;
        r = cufftCheck(cufftMakePlanMany(h, g.rank, n, nullptr, 1, idist, nullptr, 1, odist, type, batchSignals,
                           &workBytes),
            type == CUFFT_R2C ? "cufftMakePlanMany(R2C)" : "cufftMakePlanMany(C2R)");
    }
    if (!r.ok())
    {
        cufftDestroy(h);
        return r;
    }
    gPlansCreated.fetch_add(1, std::memory_order_relaxed);
    out = h;
    return ok();
}

} // namespace

int64_t cufftPlansCreated() noexcept
{
    return gPlansCreated.load(std::memory_order_relaxed);
}

void destroyPlans(FftPlans& plans) noexcept
{
    for (int32_t k = 0; k < plans.levels; ++k)
    {
        if (plans.directions & kPlanR2C)
        {
            cufftDestroy(plans.r2c[k]);
        }
        if (plans.directions & kPlanC2R)
        {
            cufftDestroy(plans.c2r[k]);
        }
    }
    plans = FftPlans{};
}

KernelResult ensurePlans(Geometry const& g, FftPlans& plans, int32_t* created, int32_t directions) noexcept
{
    if (created != nullptr)
    {
        *created = 0;
    }
    if (!geometrySane(g) || (directions & kPlanBoth) == 0 || (directions & ~kPlanBoth) != 0)
    {
        return invalid("ensurePlans");
    }
    PlanKey const key = planKey(g);
    if (plans.levels > 0 && (plans.key != key || plans.directions != directions))
    {
        destroyPlans(plans); // FFT sizes or channels changed: the geometry, not the batch
    }
    plans.key = key;
    plans.directions = directions;
    int32_t const want = planLevels(g.batch);
    if (want > kMaxPlanLevels)
    {
        return invalid("ensurePlans: batch too large");
    }
    while (plans.levels < want)
    {
        int32_t const k = plans.levels;
        int64_t const signals = (int64_t{1} << k) * g.channels;
        if (signals > INT32_MAX)
        {
            return invalid("ensurePlans: N*C exceeds int32");
        }
        size_t w1 = 0;
        size_t w2 = 0;
        cufftHandle r2c = 0;
        cufftHandle c2r = 0;
        bool const wantR2C = (directions & kPlanR2C) != 0;
        bool const wantC2R = (directions & kPlanC2R) != 0;
        KernelResult r = wantR2C ? makeOnePlan(g, CUFFT_R2C, static_cast<int>(signals), r2c, w1) : ok();
        if (!r.ok())
        {
            return r;
        }
        r = wantC2R ? makeOnePlan(g, CUFFT_C2R, static_cast<int>(signals), c2r, w2) : ok();
        if (!r.ok())
        {
            if (wantR2C)
            {
                cufftDestroy(r2c);
            }
            return r;
        }
        plans.r2c[k] = r2c;
        plans.c2r[k] = c2r;
        plans.workBytes[k] = w1 > w2 ? w1 : w2;
        plans.levels = k + 1;
        if (created != nullptr)
        {
            *created += (wantR2C ? 1 : 0) + (wantC2R ? 1 : 0);
        }
    }
    return ok();
}

size_t plansWorkBytes(FftPlans const& plans, int64_t batch, bool& covered) noexcept
{
    int32_t const levels = planLevels(batch);
    covered = levels <= plans.levels;
    size_t bytes = 0;
    for (int32_t k = 0; k < levels && k < plans.levels; ++k)
    {
        bytes = plans.workBytes[k] > bytes ? plans.workBytes[k] : bytes;
    }
    return bytes;
}

KernelResult queryWorkBytes(Geometry const& g, int32_t levels, int64_t* out, int32_t directions) noexcept
{
    if (!geometrySane(g) || out == nullptr || levels < 0 || levels > kMaxPlanLevels
        || (directions & kPlanBoth) == 0 || (directions & ~kPlanBoth) != 0)
    {
        return invalid("queryWorkBytes");
    }
    int n[2];
    int realDist = 0;
    int complexDist = 0;
    planShape(g, n, realDist, complexDist);
    for (int32_t k = 0; k < levels; ++k)
    {
        int64_t const signals = (int64_t{1} << k) * g.channels;
        if (signals > INT32_MAX)
        {
            return invalid("queryWorkBytes: N*C exceeds int32");
        }
        size_t most = 0;
        for (cufftType type : {CUFFT_R2C, CUFFT_C2R})
        {
            if ((directions & (type == CUFFT_R2C ? kPlanR2C : kPlanC2R)) == 0)
            {
                continue;
            }
            cufftHandle h = 0;
            KernelResult r = cufftCheck(cufftCreate(&h), "cufftCreate");
            if (!r.ok())
            {
                return r;
            }
            size_t bytes = 0;
            r = cufftCheck(cufftSetAutoAllocation(h, 0), "cufftSetAutoAllocation");
            if (r.ok())
            {
                int const idist = type == CUFFT_R2C ? realDist : complexDist;
                int const odist = type == CUFFT_R2C ? complexDist : realDist;
                r = cufftCheck(cufftGetSizeMany(h, g.rank, n, nullptr, 1, idist, nullptr, 1, odist, type,
                                   static_cast<int>(signals), &bytes),
                    "cufftGetSizeMany");
            }
            cufftDestroy(h);
            if (!r.ok())
            {
                return r;
            }
            most = bytes > most ? bytes : most;
            // Both calls are documented as estimates (cufftMakePlanMany reports the real size
            // later): reserve the larger of the two.
            size_t estimate = 0;
            r = cufftCheck(cufftEstimateMany(g.rank, n, nullptr, 1, type == CUFFT_R2C ? realDist : complexDist,
                               nullptr, 1, type == CUFFT_R2C ? complexDist : realDist, type, static_cast<int>(signals),
                               &estimate),
                "cufftEstimateMany");
            if (!r.ok())
            {
                return r;
            }
            most = estimate > most ? estimate : most;
        }
        out[k] = static_cast<int64_t>(most);
    }
    return ok();
}

KernelResult run(LaunchArgs const& a, FftPlans const& plans, cudaStream_t stream) noexcept
{
    Geometry const& g = a.geom;
    if (!geometrySane(g))
    {
        return invalid("run: geometry");
    }
    if (g.signals() == 0)
    {
        return ok();
    }
    if (a.x == nullptr || a.kf == nullptr || a.d == nullptr || a.y == nullptr || a.workspace == nullptr)
    {
        return invalid("run: null pointer");
    }
    Scratch w;
    KernelResult r = carveWorkspace(g, plans, kPlanBoth, a.workspace, a.workspaceBytes,
        "run: cuFFT plans missing or stale (onShapeChange not called?)",
        "run: workspace too small for this batch and its cuFFT work area, or misaligned", w);
    if (!r.ok())
    {
        return r;
    }
    if (reinterpret_cast<uintptr_t>(a.kf) % alignof(float2) != 0)
    {
        return invalid("run: Kf not 8-byte aligned");
    }
    r = launchPadCast(g, a.io, a.x, w.real, stream);
    if (r.ok())
    {
        r = execBatchChunks(g, plans, true, w.real, w.spec, w.work, stream);
    }
    if (r.ok())
    {
        r = launchSpectrumMultiply(g, a.kf, reinterpret_cast<float*>(w.spec), stream);
    }
    if (r.ok())
    {
        r = execBatchChunks(g, plans, false, w.real, w.spec, w.work, stream);
    }
    if (!r.ok())
    {
        return r;
    }
    return launchCropSkipCast(g, a.io, w.real, a.x, a.d, a.y, stream);
}

} // namespace fftconv
} // namespace hyena
