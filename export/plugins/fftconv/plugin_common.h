// Glue shared by the TensorRT plugins of the library (FFTConv, RFFT2, IRFFT2): logging and
// error reporting, TensorRT <-> core conversions, the exception barrier of every entry point,
// and PluginField -> core field map. Needs the TensorRT headers; no TensorRT library symbols
// besides getLogger().
#ifndef HYENA_PLUGIN_COMMON_H
#define HYENA_PLUGIN_COMMON_H

#include "fftconv_core.h"
#include "fftconv_kernels.cuh"

#include <NvInferRuntime.h>

#include <exception>
#include <new>
#include <string>
#include <vector>

namespace hyena
{
namespace fftconv
{

//! The logger set by setLoggerFinder() (IPluginRegistry::loadLibrary) wins over TensorRT's
//! global logger; without either, warnings and errors go to stderr.
void setLoggerFinderInstance(nvinfer1::ILoggerFinder* finder) noexcept;
void logMessage(nvinfer1::ILogger::Severity sev, std::string const& msg) noexcept;
//! To the error recorder when there is one, else logged as an error.
void reportTo(nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code, std::string const& msg) noexcept;
nvinfer1::ErrorCode toErrorCode(Status s) noexcept;
DType toDType(nvinfer1::DataType t) noexcept;
std::vector<int64_t> toVector(nvinfer1::Dims const& d);
TensorInfo toInfo(nvinfer1::Dims const& dims, nvinfer1::DataType type);
std::string kernelMessage(KernelResult const& r);

//! Converts TensorRT plugin fields to the core's name -> value map (strings stop at their
//! first NUL; integer lists of any width; the state blob as bytes).
Result fieldsToAttrMap(nvinfer1::PluginFieldCollection const* fc, AttrMap& out);

// ---- workspace: what getWorkspaceSize asks for and what onShapeChange may use ----------------

//! getWorkspaceSize for g (the profile's largest shapes): the buffers plus the cuFFT work area
//! of every batch level up to g.batch for `directions` (queryWorkBytes: no plan made). The
//! per-level work bytes are merged (max) into `record`, which the plugin serialises so the
//! runtime knows what was asked for. When cuFFT cannot size them (no GPU), nothing is
//! reserved for the work area and `warning` says so (the engine then refuses to run where
//! cuFFT needs one).
size_t sizeWorkspace(Geometry const& g, int32_t directions, std::vector<int64_t>& record, std::string& warning);

//! onShapeChange, after ensurePlans(g, plans): the workspace bytes TensorRT provides for g
//! (the buffers + the recorded work bytes of g's batch levels; without a record, sized as
//! getWorkspaceSize would) and whether the plans' real work area fits in it.
struct WorkspaceGrant
{
    Status status{Status::kOk};
    nvinfer1::ErrorCode code{nvinfer1::ErrorCode::kSUCCESS};
    std::string message;
    size_t bytes{0};
    bool ok() const noexcept { return status == Status::kOk; }
};
WorkspaceGrant grantWorkspace(
    Geometry const& g, FftPlans const& plans, std::vector<int64_t> const& record, int32_t directions);

// Pre-C++20 stand-in for try/catch around every entry point.
template <typename F, typename R>
R guarded(nvinfer1::IErrorRecorder* recorder, char const* where, R onError, F&& f) noexcept
{
    try
    {
        return f();
    }
    catch (std::bad_alloc const&)
    {
        reportTo(recorder, nvinfer1::ErrorCode::kFAILED_ALLOCATION, std::string(where) + ": out of memory");
    }
    catch (std::exception const& e)
    {
        reportTo(recorder, nvinfer1::ErrorCode::kINTERNAL_ERROR, std::string(where) + ": " + e.what());
    }
    catch (...)
    {
        reportTo(recorder, nvinfer1::ErrorCode::kINTERNAL_ERROR, std::string(where) + ": unknown exception");
    }
    return onError;
}

} // namespace fftconv
} // namespace hyena

#endif // HYENA_PLUGIN_COMMON_H
