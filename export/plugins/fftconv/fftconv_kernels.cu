// hyena::FFTConv CUDA kernels and cuFFT sequence: see fftconv_kernels.cuh.
//
// Pipeline per enqueue (all on the caller's stream, scratch in the TensorRT workspace):
//   1. pad+cast:  X (fp32|fp16) -> zero-padded fp32 planes (N*C, fftRows, fftCols)
//   2. cufftExecR2C (batched over N*C)            -> half spectra (N*C, fftRows, specCols)
//   3. multiply:  spectrum *= Kf[c] / (fftRows*fftCols)   (Kf broadcast over the batch)
//   4. cufftExecC2R (batched, out of place back into the real buffer)
//   5. crop+skip+cast: Y = real[crop window] + D[c] * X, stored as X's dtype
// The index math lives in fftconv_core.h (shared with the CPU emulation in the tests).
#include "fftconv_kernels.cuh"

#include <cuda_fp16.h>

namespace hyena
{
namespace fftconv
{
namespace
{

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 65535; // grid-stride loops cover the rest

int gridFor(int64_t total) noexcept
{
    int64_t blocks = (total + kBlock - 1) / kBlock;
    if (blocks > kMaxBlocks)
    {
        blocks = kMaxBlocks;
    }
    return static_cast<int>(blocks < 1 ? 1 : blocks);
}

__device__ __forceinline__ float loadAsFloat(float v)
{
    return v;
}
__device__ __forceinline__ float loadAsFloat(__half v)
{
    return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T storeAs(float v);
template <>
__device__ __forceinline__ float storeAs<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ __half storeAs<__half>(float v)
{
    return __float2half_rn(v);
}

template <typename T>
__global__ void padCastKernel(Geometry const g, T const* __restrict__ x, float* __restrict__ real, int64_t const total)
{
    int64_t const stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    {
        int64_t src = 0;
        real[i] = padSourceIndex(g, i, src) ? loadAsFloat(x[src]) : 0.0f;
    }
}

__global__ void spectrumMultiplyKernel(
    Geometry const g, float2 const* __restrict__ kf, float2* __restrict__ spec, int64_t const total)
{
    int64_t const stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    float const s = g.scale;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    {
        float2 const a = spec[i];
        float2 const b = kf[filterIndex(g, i)];
        spec[i] = make_float2((a.x * b.x - a.y * b.y) * s, (a.x * b.y + a.y * b.x) * s);
    }
}

template <typename T>
__global__ void cropSkipCastKernel(Geometry const g, float const* __restrict__ real, T const* __restrict__ x,
    float const* __restrict__ d, T* __restrict__ y, int64_t const total)
{
    int64_t const stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    {
        float const conv = real[cropSourceIndex(g, i)];
        y[i] = storeAs<T>(conv + d[channelOf(g, i)] * loadAsFloat(x[i]));
    }
}

KernelResult ok() noexcept
{
    return KernelResult{};
}

KernelResult invalid(char const* where) noexcept
{
    return KernelResult{KernelStatus::kInvalidArgument, 0, where};
}

KernelResult lastLaunch(char const* where) noexcept
{
    cudaError_t const e = cudaGetLastError();
    if (e != cudaSuccess)
    {
        return KernelResult{KernelStatus::kCudaError, static_cast<int32_t>(e), where};
    }
    return ok();
}

KernelResult cufftCheck(cufftResult r, char const* where) noexcept
{
    if (r != CUFFT_SUCCESS)
    {
        return KernelResult{KernelStatus::kCufftError, static_cast<int32_t>(r), where};
    }
    return ok();
}

bool geometrySane(Geometry const& g) noexcept
{
    return (g.rank == 1 || g.rank == 2) && g.batch >= 0 && g.channels > 0 && g.rows > 0 && g.cols > 0
        && g.fftRows >= g.rows + g.cropRow && g.fftCols >= g.cols + g.cropCol && g.specCols == g.fftCols / 2 + 1
        && g.cropRow >= 0 && g.cropCol >= 0 && (g.rank == 2 || g.fftRows == 1);
}

} // namespace

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
    if (total == 0)
    {
        return ok();
    }
    if (io == IoType::kFloat16)
    {
        padCastKernel<__half><<<gridFor(total), kBlock, 0, stream>>>(g, static_cast<__half const*>(x), real, total);
    }
    else
    {
        padCastKernel<float><<<gridFor(total), kBlock, 0, stream>>>(g, static_cast<float const*>(x), real, total);
    }
    return lastLaunch("padCastKernel");
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
    spectrumMultiplyKernel<<<gridFor(total), kBlock, 0, stream>>>(
        g, reinterpret_cast<float2 const*>(kf), reinterpret_cast<float2*>(spectrum), total);
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
    if (total == 0)
    {
        return ok();
    }
    if (io == IoType::kFloat16)
    {
        cropSkipCastKernel<__half><<<gridFor(total), kBlock, 0, stream>>>(
            g, real, static_cast<__half const*>(x), d, static_cast<__half*>(y), total);
    }
    else
    {
        cropSkipCastKernel<float><<<gridFor(total), kBlock, 0, stream>>>(
            g, real, static_cast<float const*>(x), d, static_cast<float*>(y), total);
    }
    return lastLaunch("cropSkipCastKernel");
}

void destroyPlans(FftPlans& plans) noexcept
{
    if (plans.valid)
    {
        cufftDestroy(plans.r2c);
        cufftDestroy(plans.c2r);
    }
    plans = FftPlans{};
}

KernelResult ensurePlans(Geometry const& g, FftPlans& plans) noexcept
{
    if (!geometrySane(g))
    {
        return invalid("ensurePlans");
    }
    PlanKey const key = planKey(g);
    if (plans.valid && plans.key == key)
    {
        return ok();
    }
    destroyPlans(plans);
    if (key.batchCount == 0)
    {
        return ok(); // empty batch: nothing to plan
    }
    int n[2] = {0, 0};
    if (g.rank == 2)
    {
        n[0] = static_cast<int>(g.fftRows);
        n[1] = static_cast<int>(g.fftCols);
    }
    else
    {
        n[0] = static_cast<int>(g.fftCols);
    }
    int const realDist = static_cast<int>(g.realPerSignal());
    int const complexDist = static_cast<int>(g.complexPerSignal());
    int const batch = static_cast<int>(key.batchCount);

    FftPlans fresh;
    size_t workBytes = 0;
    KernelResult r = cufftCheck(cufftCreate(&fresh.r2c), "cufftCreate(R2C)");
    if (!r.ok())
    {
        return r;
    }
    r = cufftCheck(cufftCreate(&fresh.c2r), "cufftCreate(C2R)");
    if (!r.ok())
    {
        cufftDestroy(fresh.r2c);
        return r;
    }
    // Contiguous batches: inembed/onembed = nullptr selects the basic layout with
    // unit stride and the given distances between signals.
    r = cufftCheck(cufftMakePlanMany(fresh.r2c, g.rank, n, nullptr, 1, realDist, nullptr, 1, complexDist, CUFFT_R2C,
                       batch, &workBytes),
        "cufftMakePlanMany(R2C)");
    if (r.ok())
    {
        r = cufftCheck(cufftMakePlanMany(fresh.c2r, g.rank, n, nullptr, 1, complexDist, nullptr, 1, realDist,
                           CUFFT_C2R, batch, &workBytes),
            "cufftMakePlanMany(C2R)");
    }
    if (!r.ok())
    {
        cufftDestroy(fresh.r2c);
        cufftDestroy(fresh.c2r);
        return r;
    }
    fresh.valid = true;
    fresh.key = key;
    plans = fresh;
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
    if (!plans.valid || plans.key != planKey(g))
    {
        return invalid("run: cuFFT plans missing or stale (onShapeChange not called?)");
    }
    WorkspaceLayout const w = workspaceLayout(g);
    if (a.workspaceBytes < w.totalBytes || reinterpret_cast<uintptr_t>(a.workspace) % kWorkspaceAlignment != 0)
    {
        return invalid("run: workspace too small or misaligned");
    }
    if (reinterpret_cast<uintptr_t>(a.kf) % alignof(float2) != 0)
    {
        return invalid("run: Kf not 8-byte aligned");
    }
    auto* base = static_cast<unsigned char*>(a.workspace);
    float* const real = reinterpret_cast<float*>(base + w.realOffset);
    float* const spec = reinterpret_cast<float*>(base + w.complexOffset);

    KernelResult r = launchPadCast(g, a.io, a.x, real, stream);
    if (!r.ok())
    {
        return r;
    }
    r = cufftCheck(cufftSetStream(plans.r2c, stream), "cufftSetStream(R2C)");
    if (!r.ok())
    {
        return r;
    }
    r = cufftCheck(cufftExecR2C(plans.r2c, real, reinterpret_cast<cufftComplex*>(spec)), "cufftExecR2C");
    if (!r.ok())
    {
        return r;
    }
    r = launchSpectrumMultiply(g, a.kf, spec, stream);
    if (!r.ok())
    {
        return r;
    }
    r = cufftCheck(cufftSetStream(plans.c2r, stream), "cufftSetStream(C2R)");
    if (!r.ok())
    {
        return r;
    }
    r = cufftCheck(cufftExecC2R(plans.c2r, reinterpret_cast<cufftComplex*>(spec), real), "cufftExecC2R");
    if (!r.ok())
    {
        return r;
    }
    return launchCropSkipCast(g, a.io, real, a.x, a.d, a.y, stream);
}

} // namespace fftconv
} // namespace hyena
