// hyena::RFFT2 / hyena::IRFFT2 -- CUDA side: planar <-> interleaved kernels around cuFFT's
// 2-D R2C / C2R, and the enqueue sequence of each transform.
//
// Host-only declarations (includable by a plain C++ compiler with the CUDA runtime and
// cuFFT headers). Plans and the workspace are those of fftconv_kernels.cuh: the transform's
// Geometry comes from planSpectralGeometry (spectral_core.h), the plans hold R2C only
// (RFFT2) or C2R only (IRFFT2), the workspace is workspaceLayout(geom, work bytes).
#ifndef HYENA_SPECTRAL_KERNELS_CUH
#define HYENA_SPECTRAL_KERNELS_CUH

#include "fftconv_kernels.cuh"
#include "spectral_core.h"

namespace hyena
{
namespace fftconv
{

//! The cuFFT directions a transform plans: kPlanR2C for RFFT2, kPlanC2R for IRFFT2.
int32_t planDirections(Direction dir) noexcept;

struct SpectralLaunchArgs
{
    Direction dir{Direction::kForward};
    Geometry geom{};          //!< from planSpectralGeometry
    IoType io{IoType::kFloat32};
    void const* x{nullptr};   //!< RFFT2: (N, C, H, W); IRFFT2: (N, 2C, H, W/2+1) planar
    void* y{nullptr};         //!< RFFT2: (N, 2C, H, W/2+1) planar; IRFFT2: (N, C, H, W); X's dtype
    void* workspace{nullptr}; //!< 256-byte aligned; layout workspaceLayout(geom, plansWorkBytes(...))
    size_t workspaceBytes{0}; //!< bytes really available at `workspace`
};

//! RFFT2:  cast X to fp32 -> cufftExecR2C per batch chunk -> unpack to planar * 1/sqrt(HW) + cast.
//! IRFFT2: pack planar (Hermitian part of the DC/Nyquist columns) * 1/sqrt(HW) -> cufftExecC2R
//!         per batch chunk -> cast.
//! All on `stream`; refuses (kInvalidArgument, nothing launched) when the workspace is too
//! small, the plans are missing/stale or of the wrong direction. No allocation, plan
//! creation or synchronisation (CUDA-graph capturable).
KernelResult runSpectral(SpectralLaunchArgs const& args, FftPlans const& plans, cudaStream_t stream) noexcept;

// Individual kernel launches (exposed for tests on a GPU host).
KernelResult launchUnpackPlanar(Geometry const& g, IoType io, float const* spectrum, void* y, cudaStream_t stream) noexcept;
KernelResult launchPackPlanar(Geometry const& g, IoType io, void const* x, float* spectrum, cudaStream_t stream) noexcept;
KernelResult launchCastOut(Geometry const& g, IoType io, float const* real, void* y, cudaStream_t stream) noexcept;

} // namespace fftconv
} // namespace hyena

#endif // HYENA_SPECTRAL_KERNELS_CUH
