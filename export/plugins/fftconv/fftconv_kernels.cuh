// hyena::FFTConv -- CUDA side: kernels + cuFFT plan management + the enqueue sequence.
//
// Host-only declarations: this header can be included by a plain C++ compiler (the
// TensorRT glue) as long as the CUDA runtime and cuFFT headers are on the include path.
// No TensorRT here. Every function returns a status code; nothing throws.
#ifndef HYENA_FFTCONV_KERNELS_CUH
#define HYENA_FFTCONV_KERNELS_CUH

#include "fftconv_core.h"

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>
#include <cufft.h>

namespace hyena
{
namespace fftconv
{

enum class KernelStatus : int32_t
{
    kOk = 0,
    kInvalidArgument = 1, //!< null pointer, bad geometry, workspace too small, no plans
    kCudaError = 2,       //!< a kernel launch failed (detail = cudaError_t)
    kCufftError = 3,      //!< a cuFFT call failed (detail = cufftResult)
};

//! Status plus the underlying CUDA/cuFFT code, for error messages.
struct KernelResult
{
    KernelStatus status{KernelStatus::kOk};
    int32_t detail{0};
    char const* where{""};

    bool ok() const noexcept { return status == KernelStatus::kOk; }
};

//! Human-readable description ("cuFFT error 5 in cufftExecR2C" ...), static storage.
char const* kernelStatusName(KernelStatus s) noexcept;

enum class IoType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
};

//! R2C and C2R plans, batched over N*C signals (cufftPlanMany), keyed by PlanKey.
struct FftPlans
{
    cufftHandle r2c{0};
    cufftHandle c2r{0};
    bool valid{false};
    PlanKey key{};
};

//! (Re)creates `plans` for `g` unless they already match planKey(g). Plans allocate their
//! own cuFFT work area at creation (outside enqueue). A geometry with no signals leaves
//! the plans empty (nothing to run).
KernelResult ensurePlans(Geometry const& g, FftPlans& plans) noexcept;

//! Destroys the plans (safe on empty plans).
void destroyPlans(FftPlans& plans) noexcept;

struct LaunchArgs
{
    Geometry geom{};
    IoType io{IoType::kFloat32};
    void const* x{nullptr};   //!< X (N, C, H, W), fp32 or fp16
    float const* kf{nullptr}; //!< Kf (C, fftRows, specCols, 2) fp32
    float const* d{nullptr};  //!< D (C,) fp32
    void* y{nullptr};         //!< Y, X's shape and dtype
    void* workspace{nullptr}; //!< >= workspaceLayout(geom).totalBytes, 256-byte aligned
    size_t workspaceBytes{0};
};

//! pad+cast -> R2C -> (x Kf / (Nh*Nw)) -> C2R -> crop + D*x + cast, all on `stream`.
//! Sets the plans' stream on every call (plans may be shared across enqueues/streams).
KernelResult run(LaunchArgs const& args, FftPlans const& plans, cudaStream_t stream) noexcept;

// Individual kernel launches (exposed for tests on a GPU host).
KernelResult launchPadCast(Geometry const& g, IoType io, void const* x, float* real, cudaStream_t stream) noexcept;
KernelResult launchSpectrumMultiply(
    Geometry const& g, float const* kf, float* spectrum, cudaStream_t stream) noexcept;
KernelResult launchCropSkipCast(Geometry const& g, IoType io, float const* real, void const* x, float const* d,
    void* y, cudaStream_t stream) noexcept;

} // namespace fftconv
} // namespace hyena

#endif // HYENA_FFTCONV_KERNELS_CUH
