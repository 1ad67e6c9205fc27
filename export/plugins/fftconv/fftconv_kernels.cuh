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

//! Whether g is a geometry the kernels can run (rank, positive sizes, crop window inside
//! the transform, specCols consistent); every launch checks it first.
bool geometrySane(Geometry const& g) noexcept;

//! Human-readable description ("cuFFT error 5 in cufftExecR2C" ...), static storage.
char const* kernelStatusName(KernelStatus s) noexcept;

enum class IoType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
};

//! Which transforms a plan set holds: FFTConv needs both, RFFT2 only R2C, IRFFT2 only C2R.
constexpr int32_t kPlanR2C = 1;
constexpr int32_t kPlanC2R = 2;
constexpr int32_t kPlanBoth = kPlanR2C | kPlanC2R;

//! R2C and/or C2R plans of one plugin instance, one per direction and batch level k
//! (batched over 2^k * C signals; see batchChunks() in fftconv_core.h). Made with cuFFT's
//! auto-allocation off: they own no work area; run() hands them a slice of the caller's
//! workspace. Only the directions in `directions` exist.
struct FftPlans
{
    cufftHandle r2c[kMaxPlanLevels]{};
    cufftHandle c2r[kMaxPlanLevels]{};
    size_t workBytes[kMaxPlanLevels]{}; //!< largest work area of level k's plans, from cufftMakePlanMany
    int32_t levels{0};                  //!< levels 0..levels-1 exist
    int32_t directions{kPlanBoth};
    PlanKey key{};
};

//! Makes sure `plans` can run batch g.batch: if the plan key (FFT sizes, C) or the
//! directions differ, every plan is destroyed first; then the missing levels
//! 0..planLevels(g.batch)-1 are made, for the requested directions only.
//! Nothing is created when they exist already, so after the first call for a batch size
//! (and for every smaller one) this makes no plan. Call outside enqueue: plan creation
//! allocates (twiddles) and synchronises. `created` (optional) receives the number of
//! cuFFT plans made by this call.
KernelResult ensurePlans(
    Geometry const& g, FftPlans& plans, int32_t* created = nullptr, int32_t directions = kPlanBoth) noexcept;

//! Destroys the plans (safe on empty plans).
void destroyPlans(FftPlans& plans) noexcept;

//! cuFFT work-area bytes the existing plans need for batch `batch` (largest of levels
//! 0..planLevels(batch)-1); `covered` is false when a level is missing.
size_t plansWorkBytes(FftPlans const& plans, int64_t batch, bool& covered) noexcept;

//! Work-area bytes of the R2C/C2R plans at levels 0..levels-1 for geometry g, without making
//! plans (the larger of cufftGetSizeMany on a temporary handle with auto-allocation off and
//! cufftEstimateMany): what getWorkspaceSize reserves. out[k] = max over the requested
//! directions (R2C, C2R) of level k.
//! onShapeChange later compares it with what cufftMakePlanMany reports for the real plans.
KernelResult queryWorkBytes(Geometry const& g, int32_t levels, int64_t* out, int32_t directions = kPlanBoth) noexcept;

//! Number of cuFFT plans this process has made through ensurePlans (successful
//! cufftMakePlanMany calls), for tests that assert "no re-planning".
int64_t cufftPlansCreated() noexcept;

struct LaunchArgs
{
    Geometry geom{};
    IoType io{IoType::kFloat32};
    void const* x{nullptr};   //!< X (N, C, H, W), fp32 or fp16
    float const* kf{nullptr}; //!< Kf (C, fftRows, specCols, 2) fp32
    float const* d{nullptr};  //!< D (C,) fp32
    void* y{nullptr};         //!< Y, X's shape and dtype
    void* workspace{nullptr}; //!< 256-byte aligned; layout workspaceLayout(geom, plansWorkBytes(...))
    size_t workspaceBytes{0}; //!< bytes really available at `workspace` (what TensorRT was asked for)
};

//! pad+cast -> R2C -> (x Kf / (Nh*Nw)) -> C2R -> crop + D*x + cast, all on `stream`.
//! Sets every used plan's stream and work area (a slice of `workspace`) on every call;
//! refuses (kInvalidArgument, nothing launched) when the workspace is smaller than the
//! layout needs, or plans are missing. No allocation, plan creation or synchronisation,
//! so it can be captured in a CUDA graph.
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
