// Device helpers and status constructors shared by the CUDA sources of the plugin library
// (fftconv_kernels.cu, spectral_kernels.cu). Internal: include only from .cu files.
#ifndef HYENA_FFTCONV_CUDA_UTIL_CUH
#define HYENA_FFTCONV_CUDA_UTIL_CUH

#include "fftconv_kernels.cuh"

#include <cuda_fp16.h>
#include <cufft.h>

#include <cstdint>

namespace hyena
{
namespace fftconv
{
namespace cudautil
{

constexpr int kBlock = 256;
constexpr int64_t kMaxBlocks = 65535; // grid-stride loops cover the rest

inline int gridFor(int64_t total) noexcept
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

inline KernelResult ok() noexcept
{
    return KernelResult{};
}

inline KernelResult invalid(char const* where) noexcept
{
    return KernelResult{KernelStatus::kInvalidArgument, 0, where};
}

inline KernelResult lastLaunch(char const* where) noexcept
{
    cudaError_t const e = cudaGetLastError();
    if (e != cudaSuccess)
    {
        return KernelResult{KernelStatus::kCudaError, static_cast<int32_t>(e), where};
    }
    return ok();
}

inline KernelResult cufftCheck(cufftResult r, char const* where) noexcept
{
    if (r != CUFFT_SUCCESS)
    {
        return KernelResult{KernelStatus::kCufftError, static_cast<int32_t>(r), where};
    }
    return ok();
}

//! Calls launch(T{}, I{}) for the I/O element type T of io (float or __half) and the index
//! type I (int32_t when index32, else int64_t): the four instantiations every elementwise
//! kernel of the library is launched with, chosen in one place. `launch` is a generic lambda
//! that names the kernel: [&](auto t, auto i) { kernel<decltype(t), decltype(i)><<<...>>>(...); }.
template <typename F>
inline void dispatchIoIndex(IoType io, bool index32, F&& launch)
{
    if (io == IoType::kFloat16)
    {
        if (index32)
            launch(__half{}, int32_t{});
        else
            launch(__half{}, int64_t{});
    }
    else
    {
        if (index32)
            launch(float{}, int32_t{});
        else
            launch(float{}, int64_t{});
    }
}

//! The frame of every elementwise launcher, after it checked its arguments: nothing to do
//! for `total` == 0, else `launch` through dispatchIoIndex (int32 indices when g fits) and
//! the launch status as lastLaunch(kernelName).
template <typename F>
inline KernelResult launchElementwise(
    Geometry const& g, IoType io, int64_t total, char const* kernelName, F&& launch) noexcept
{
    if (total == 0)
    {
        return ok();
    }
    dispatchIoIndex(io, kernelIndexFits32(g), launch);
    return lastLaunch(kernelName);
}

// ---- what run() (FFTConv) and runSpectral() (RFFT2/IRFFT2) do alike around their kernels ------

//! The scratch buffers of one enqueue, carved from TensorRT's workspace.
struct Scratch
{
    float* real{nullptr};          //!< fp32 planes (N*C, fftRows, fftCols)
    cufftComplex* spec{nullptr};   //!< half spectra
    void* work{nullptr};           //!< the one cuFFT work area of all plans (null: none needed)
};

//! Checks that `plans` cover g for `directions` and that the workspace (workspaceBytes at
//! `workspace`) holds g's layout with the plans' work area, then carves it into `out`.
//! The refusals are invalid(stalePlans) and invalid(smallWorkspace): static messages, as
//! KernelResult keeps only the pointer.
inline KernelResult carveWorkspace(Geometry const& g, FftPlans const& plans, int32_t directions, void* workspace,
    size_t workspaceBytes, char const* stalePlans, char const* smallWorkspace, Scratch& out) noexcept
{
    bool covered = false;
    size_t const workBytes = plansWorkBytes(plans, g.batch, covered);
    if (!covered || plans.key != planKey(g) || plans.directions != directions)
    {
        return invalid(stalePlans);
    }
    WorkspaceLayout const w = workspaceLayout(g, workBytes);
    bool wsOk = false;
    try
    {
        wsOk = checkWorkspace(g, workBytes, workspaceBytes, reinterpret_cast<uintptr_t>(workspace)).ok();
    }
    catch (...) // the message string could not be allocated: still refuse
    {
    }
    if (!wsOk)
    {
        return invalid(smallWorkspace);
    }
    auto* base = static_cast<unsigned char*>(workspace);
    out.real = reinterpret_cast<float*>(base + w.realOffset);
    out.spec = reinterpret_cast<cufftComplex*>(base + w.complexOffset);
    // The pointer is set on every call because TensorRT may move the workspace between calls.
    out.work = workBytes > 0 ? static_cast<void*>(base + w.workOffset) : nullptr;
    return ok();
}

//! One cuFFT pass over all signals of g, R2C (real -> spec) or C2R (spec -> real), on
//! `stream` with the work area `work`: batch chunks as in batchChunks() (fftconv_core.h),
//! one per set bit of N, largest first, each with the plan of its level; walked without a
//! host allocation.
inline KernelResult execBatchChunks(Geometry const& g, FftPlans const& plans, bool r2c, float* real,
    cufftComplex* spec, void* work, cudaStream_t stream) noexcept
{
    KernelResult r = ok();
    int64_t first = 0;
    for (int32_t k = planLevels(g.batch) - 1; r.ok() && k >= 0; --k)
    {
        if (((g.batch >> k) & 1) == 0)
        {
            continue;
        }
        int64_t const s0 = first * g.channels;
        first += int64_t{1} << k;
        cufftHandle const h = r2c ? plans.r2c[k] : plans.c2r[k];
        r = cufftCheck(cufftSetStream(h, stream), r2c ? "cufftSetStream(R2C)" : "cufftSetStream(C2R)");
        if (r.ok() && work != nullptr)
        {
            r = cufftCheck(cufftSetWorkArea(h, work), r2c ? "cufftSetWorkArea(R2C)" : "cufftSetWorkArea(C2R)");
        }
        if (r.ok())
        {
            r = r2c ? cufftCheck(cufftExecR2C(h, real + s0 * g.realPerSignal(), spec + s0 * g.complexPerSignal()),
                          "cufftExecR2C")
                    : cufftCheck(cufftExecC2R(h, spec + s0 * g.complexPerSignal(), real + s0 * g.realPerSignal()),
                          "cufftExecC2R");
        }
    }
    return r;
}

} // namespace cudautil
} // namespace fftconv
} // namespace hyena

#endif // HYENA_FFTCONV_CUDA_UTIL_CUH
