// Device helpers and status constructors shared by the CUDA sources of the plugin library
// (fftconv_kernels.cu, spectral_kernels.cu). Internal: include only from .cu files.
#ifndef HYENA_FFTCONV_CUDA_UTIL_CUH
#define HYENA_FFTCONV_CUDA_UTIL_CUH

#include "fftconv_kernels.cuh"

#include <cuda_fp16.h>

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

} // namespace cudautil
} // namespace fftconv
} // namespace hyena

#endif // HYENA_FFTCONV_CUDA_UTIL_CUH
